"""Text classification: a head with N labels on the start model, trained with transformers' ``Trainer``.

Rows are ``text`` and ``label`` (``columns: {text: review, label: sentiment}`` maps other names); labels
are ids or names (``rlft.stages.classification``), and ``num_labels`` defaults to the labels found. The model is
``AutoModelForSequenceClassification`` on the recipe's model or an earlier stage's (``init_from``),
trained in full or with LoRA (task SEQ_CLS: the adapter plus a fully trained head). TRL has no
classification trainer, so ``trl:`` holds ``transformers.TrainingArguments`` keys. Held-out rows
(``eval_data``, the bundled test split, or ``eval_fraction``) give the common scorecard names before and
after training: ``baseline/accuracy`` (the untrained head), ``eval/accuracy``, ``eval/loss`` and
``eval/macro_f1``. The manifest's ``labels`` entry holds the rows per class and the held-out confusion
matrix; ``samples.jsonl`` each held-out text with its label, prediction and class probabilities. The
saved model (safetensors, LoRA merged, ``id2label``/``label2id`` in its config) reloads with
``AutoModelForSequenceClassification``. It is not a policy: an ``eval`` stage does not generate with it.
"""

from __future__ import annotations

from rlft.distributed import is_main_process
from rlft.recipe import ClassifierStage
from rlft.stages.classification import HeldOutScores, LabelSpace, label_space
from rlft.stages.context import StageContext, StageResult
from rlft.stages.inputs import load_split, lora_config
from rlft.stages.saving import save_model
from rlft.stages.train_loop import final_train_metrics, held_out_metrics, train_between_evaluations
from rlft.stages.trl_config import trl_config_for


def _load_head(ctx: StageContext, cfg: ClassifierStage, labels: LabelSpace):
    from transformers import AutoModelForSequenceClassification

    from rlft.models import from_pretrained_kwargs, load_tokenizer, require_safetensors
    from rlft.training.selective import load_start

    ref = ctx.model_ref(cfg.init_from)
    ctx.notes.start_model = ref
    kw = ctx.recipe.model_kwargs_for(cfg)
    tok = load_tokenizer(ref, trust_remote_code=ctx.recipe.trust_remote_code, revision=kw.revision)
    require_safetensors(ref)
    model = load_start(  # with the stage's dropout: and freeze: (rlft.training.selective)
        ctx,
        cfg,
        ref,
        lambda **dropout: AutoModelForSequenceClassification.from_pretrained(
            ref,
            **labels.config(),
            ignore_mismatched_sizes=True,  # from an earlier classifier or reward model with another number of outputs: a fresh head
            **from_pretrained_kwargs(kw),
            trust_remote_code=ctx.recipe.trust_remote_code,
            use_safetensors=True,
            **dropout,
        ),
    )
    model.config.pad_token_id = tok.pad_token_id  # the head reads the last token that is not padding
    return model, tok


def _encode(rows, tok, labels: LabelSpace, max_length: int):
    """The columns the Trainer feeds the model: token ids (cut at ``max_length``) and each row's output id as ``labels``."""

    def encode(batch):
        enc = tok(batch["text"], truncation=True, max_length=max_length)
        enc["labels"] = [labels.ids[v] for v in batch["label"]]
        return enc

    return rows.map(encode, batched=True, remove_columns=rows.column_names)


def run(cfg: ClassifierStage, ctx: StageContext) -> StageResult:
    from peft import get_peft_model
    from transformers import DataCollatorWithPadding, Trainer

    from rlft.data.rows import check_lengths

    train, test = load_split(cfg, ctx, required=cfg.required_columns)
    labels = label_space(train, test, num_labels=cfg.num_labels, stage=cfg.name, data=ctx.notes.data)

    model, tok = _load_head(ctx, cfg, labels)
    if cfg.peft is not None and cfg.peft.lora is not None:
        model = get_peft_model(model, lora_config(cfg, "SEQ_CLS", model=model))
    args = trl_config_for(cfg, str(ctx.paths.trainer), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    where = f"stages.{cfg.name}.data"
    too_long = check_lengths(train, tok, cfg.max_length, policy=cfg.data.too_long, label=ctx.notes.data["train"], where=where)
    ctx.notes.rows_over_max_length = too_long
    if too_long:
        print(f"[{cfg.name}] {too_long} of {len(train)} training texts are longer than max_length {cfg.max_length}: cut to it", flush=True)
    scores = HeldOutScores(labels.names)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_encode(train, tok, labels, cfg.max_length),
        eval_dataset=_encode(test, tok, labels, cfg.max_length),
        data_collator=DataCollatorWithPadding(tok),
        processing_class=tok,
        compute_metrics=scores,
    )
    before, after, metrics = train_between_evaluations(trainer, cfg, before=cfg.scorecard.baseline, ctx=ctx)
    metrics.update(final_train_metrics(trainer.state.log_history, cfg.train_log_keys))
    metrics.update(held_out_metrics(before, after, {key: f"eval_{key}" for key in ("accuracy", "loss", "macro_f1")}))
    metrics["eval/n"] = len(test)
    ctx.notes.labels = {
        "names": labels.names,
        "train_rows": labels.counts(train),
        "held_out_rows": labels.counts(test),
        "confusion": scores.confusion(),  # [true][predicted], held-out rows, after training
    }

    path = save_model(trainer.model, tok, ctx.out_dir, trainer, stage=cfg, notes=ctx.notes)
    if is_main_process():  # the held-out scorecard of a classifier: its predictions on the held-out texts
        scores.write_samples(ctx.paths.samples, list(test["text"]), ctx.tracker)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
