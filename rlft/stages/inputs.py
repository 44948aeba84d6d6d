"""What a training stage starts from: its rows (training and held-out), its starting model, its LoRA config."""

from __future__ import annotations

from rlft.data.augment.apply import augment_rows, flat_counts, summary_line
from rlft.data.augment.transforms import HeldOut
from rlft.errors import RlftError
from rlft.stages.context import StageContext


def load_start_model(ctx: StageContext, stage, ref: str | None = None):
    """Load the tokenizer and causal LM a stage starts from, with the stage's ``dropout:``, ``freeze:`` (``rlft.training.selective``)
    and ``model_kwargs`` (the recipe's, its own keys over them).

    ``ref``: load that folder instead, the same way (a stage that trains in rounds starts each round from the last one's model).
    """
    from rlft.models import load_causal_lm, load_tokenizer
    from rlft.training.selective import load_start

    if ref is None:
        ref = ctx.model_ref(stage.init_from)
        ctx.notes.start_model = ref
    kw = ctx.recipe.model_kwargs_for(stage)  # model_kwargs: dtype, attn_implementation, revision, load_in_4bit
    tok = load_tokenizer(ref, trust_remote_code=ctx.recipe.trust_remote_code, revision=kw.revision)
    model = load_start(
        ctx, stage, ref, lambda **dropout: load_causal_lm(ref, trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=kw, **dropout)
    )
    return model, tok


def load_split(cfg, ctx: StageContext, *, kind: str | None = None, required: tuple[str, ...] = ()):
    """Training rows and held-out rows of a training stage.

    Held-out rows: ``eval_data``, else the bundled source's ``test`` split, else a seeded
    ``eval_fraction`` of the rows. Records both in the manifest's ``data`` entry. With ``data.augment``,
    augmented copies of training rows are added (``rlft.data.augment``; held-out rows stay as they are).
    """
    from rlft.data.rows import load_rows

    seed = ctx.seed_for(cfg)  # also draws a data mixture's samples
    split = cfg.data.split or cfg.default_split
    rows, fp, label = load_rows(cfg.data, split=split, kind=kind, required=required, base_dir=ctx.recipe_dir, seed=seed)
    if cfg.eval_data is not None or cfg.data.bundled:
        spec = cfg.eval_data or cfg.data.model_copy(update={"limit": None, "split": "test"})
        test, _, test_label = load_rows(spec, split=spec.split or "test", kind=kind, required=required, base_dir=ctx.recipe_dir, seed=seed)
        train = rows
    else:
        if len(rows) < 2:
            raise RlftError(
                f"data {label} has {len(rows)} row; a held-out share needs at least 2",
                where=f"stages.{cfg.name}.data",
                fix="add rows, or name held-out rows with `eval_data:`",
            )
        parts = rows.train_test_split(test_size=cfg.eval_fraction, seed=ctx.seed_for(cfg))
        train, test, test_label = parts["train"], parts["test"], f"{label} (held-out {cfg.eval_fraction:.0%})"
    if cfg.data.augment is not None:  # training rows only, after the held-out ones are set apart (rlft.data.augment)
        from rlft.stages.inputs import augment_split

        train = augment_split(train, test, cfg, ctx)
    if cfg.eval_limit is not None and len(test) > cfg.eval_limit:
        test = test.select(range(cfg.eval_limit))
    ctx.notes.data = {"train": label, "rows": len(train), "held_out": test_label, "held_out_rows": len(test), "fingerprint": fp}
    return train, test


def load_pairs(cfg, ctx: StageContext):
    """Training and held-out preference pairs of a pair stage (reward_model, dpo, kto, orpo, simpo)."""
    return load_split(cfg, ctx, kind="preference")


def check_row_lengths(cfg, ctx: StageContext, rows, tok, args) -> int:
    """Rows longer than the trainer's ``max_length``: refused (``data.too_long: error``) or counted and reported (TRL cuts them)."""
    from rlft.data.rows import check_lengths

    max_length = getattr(args, "max_length", None)
    if not max_length:
        return 0
    where = f"stages.{cfg.name}.data"
    n = check_lengths(rows, tok, max_length, policy=cfg.data.too_long, label=cfg.data.label, where=where)
    ctx.notes.rows_over_max_length = n
    if n:
        print(f"[{cfg.name}] {n} of {len(rows)} training rows are longer than max_length {max_length}: TRL truncates them", flush=True)
    return n


def lora_config(stage, task_type: str = "CAUSAL_LM", model=None):
    """A PEFT LoraConfig from the stage's ``peft.lora`` (None for full fine-tuning).

    ``model``: the model the adapter wraps; the blocks its ``freeze:`` fixes then get no adapter
    (``exclude_modules``). Without it (PPO's critic) every block gets one.
    """
    if stage.peft is None or stage.peft.lora is None:
        return None
    from peft import LoraConfig

    from rlft.training.selective import lora_exclusions

    lo = stage.peft.lora
    exclude = lora_exclusions(stage, model) if model is not None else None
    return LoraConfig(
        r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules, exclude_modules=exclude, task_type=task_type
    )


def augment_split(train, held_out, cfg, ctx):
    """A training stage's rows with augmented copies added (``cfg.data.augment``); held-out rows only guard.

    Reports the counts on stdout, in the manifest (``ctx.notes.augment``) and in the W&B summary (``augment/...``).
    """
    import datasets

    from rlft.distributed import is_main_process

    spec = cfg.data.augment
    seed = spec.seed if spec.seed is not None else ctx.seed_for(cfg)
    rows = train.to_list()
    out, report = augment_rows(rows, spec, seed=seed, held_out=HeldOut.of(held_out.to_list()))
    ctx.notes.augment = report
    if ctx.tracker is not None:
        ctx.tracker.summary_update(flat_counts(report))
    if is_main_process():
        print(summary_line(cfg.name, report), flush=True)
    if not report["added"]:
        return train
    return datasets.concatenate_datasets([train, datasets.Dataset.from_list(out[len(rows) :], features=train.features)])
