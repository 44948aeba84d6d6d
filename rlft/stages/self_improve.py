"""Self-improvement in rounds: expert iteration (rejection-sampling fine-tuning) and iterative DPO.

The loop, literally: the model tries, the stage's rewards judge the tries, the model learns from them, again.
Each of ``rounds`` rounds

1. takes ``sampling.prompts`` training prompts (the rows shuffled once with the stage's seed, taken in turn),
2. samples ``sampling.completions`` completions for each from the current model (temperature, top-p; the
   model's own generation config set aside, as in rlft's PPO; each prompt prefilled once for its k tries,
   ``rlft.training.shared_prefix``),
3. scores every completion with the stage's rewards (any reward reference: functions, reward models,
   ensembles), called as TRL calls them; a completion's total is the weighted sum,
4. learns: ``expert_iteration`` fine-tunes (TRL's SFTTrainer, LoRA or full) on the best of each prompt's
   tries that clear ``keep.min_reward`` (and/or rank in ``keep.top_fraction``) — the loop known as RAFT,
   ReST-EM or STaR; ``iterative_dpo`` trains DPO (TRL's DPOTrainer) on each prompt's best try against its
   worst (ties never pair), with the round's starting model as the reference,
5. scores the held-out prompts greedily (the common scorecard: ``round<N>/reward/<name>``, its paired
   difference to the starting model with a 95% interval, KL to the starting model).

What a round leaves, under the stage folder ``rounds/round-<N>/``: ``samples.jsonl`` (every try: prompt row,
completion, total, each reward, whether it was kept or paired), ``kept.jsonl`` or ``pairs.jsonl`` (what the
round trained on), ``round.json`` (its figures). W&B gets one point per round with the round as its step:
``round/train/pass_at_k`` (with ``keep.min_reward`` or ``pairs.min_chosen_reward`` as the bar),
``round/train/mean_reward``, ``round/train/best_of_k_reward``, ``round/kept`` (or ``round/pairs``) and
``round/kept_fraction``, ``round/kept_mean_reward``, ``round/heldout/reward/<name>`` with
``/delta/.../ci_low|ci_high``, ``round/heldout/kl_to_ref``, and where the round's time went: ``round/try_s`` (sampling and scoring),
``round/learn_s`` (training and saving), ``round/heldout_s``, ``round/wall_s``. The stage's metrics hold
the same per round (``round<N>/...``) and the usual ``eval/...``/``baseline/...`` of the model it ends with.

A round where nothing clears the bar is said plainly (printed, ``round/kept`` 0, a note in ``round.json``):
it trains nothing and the next round starts from the same model. A reward that raises stops the stage with
an error naming the reward, the round and the training row. With ``early_stopping:`` the stage stops
after ``patience`` rounds without a better held-out reward and ends with the best round's model
(``restore_best``). A killed stage resumes from its last finished round: finished rounds are not sampled
or trained again (``rlft.training.rounds.RoundState``); a round cut short resumes from its trainer's own
checkpoint, with the samples it had drawn.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from rlft.errors import RlftError
from rlft.evaluation.scorecard import TRL_LOGGERS, generate, prompts_of
from rlft.layout import RoundLayout
from rlft.stages.context import StageContext, StageResult
from rlft.stages.heldout import begin_scorecard, end_scorecard
from rlft.stages.inputs import load_split, load_start_model, lora_config
from rlft.stages.progress import use_rlft_progress
from rlft.stages.saving import save_model
from rlft.stages.trl_config import trl_config_for
from rlft.training.checkpoints import last_checkpoint, train_resumable
from rlft.training.rounds import RoundState, Tries, best_vs_worst, keep_best, round_figures, round_prompts, weighted_totals


def run(cfg, ctx: StageContext) -> StageResult:
    from rlft.models import load_causal_lm

    train, test = load_split(cfg, ctx, required=cfg.required_columns)
    label = ctx.notes.data["train"]
    rewards = ctx.resolve_rewards(cfg.rewards, columns=train.column_names, data_label=label, where=f"stages.{cfg.name}.rewards")
    model, tok = load_start_model(ctx, cfg)
    start = ctx.notes.start_model
    held, metrics = begin_scorecard(cfg, ctx, test, model, tok, rewards)
    if cfg.early_stopping is not None and held.card is None:
        raise RlftError(
            "early stopping by round scores each round on the held-out prompts, and this stage has none",
            where=f"stages.{cfg.name}.early_stopping",
            fix="give held-out rows with prompts (eval_data) and scorecard.prompts > 0, or remove early_stopping",
        )
    kw = ctx.recipe.model_kwargs_for(cfg)
    ref = load_causal_lm(start, trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=kw) if held.card is not None else None
    state = RoundState.load(last_checkpoint(ctx.paths.trainer))
    current = _round_model(ctx, state.done) if state.done else start
    if state.done:
        print(f"[{cfg.name}] resuming after round {state.done} of {cfg.rounds}: finished rounds are not redone", flush=True)
        if ctx.tracker is not None:
            ctx.tracker.resumed_from(state.done)  # history.jsonl: a round logged after the last saved state is redone
    seed = ctx.seed_for(cfg)
    for r in range(state.done + 1, cfg.rounds + 1):
        if state.stopped:
            break
        t0 = time.monotonic()
        if r > 1:  # round 1 trains the model loaded above; a later (or resumed) round the last round's
            model, tok = load_start_model(ctx, cfg, ref=current)
        folder = _round_folder(ctx, r)
        rows = train.select(round_prompts(len(train), cfg.sampling.prompts, r, seed))
        tries = _tries(cfg, ctx, model, tok, rows, rewards, r, seed)
        t1 = time.monotonic()
        learned, figures = _learn(cfg, ctx, model, tok, rows, tries, r, seed)
        model = None  # the next round loads what this one saved (or the same start, when nothing was learned)
        current = learned or current
        t2 = time.monotonic()
        figures.update(_held_out_round(cfg, ctx, held, current, tok, ref, r))
        t3 = time.monotonic()
        # where the round's time went: trying (sampling and scoring), learning (selecting, training, saving), held-out scoring
        figures.update(try_s=round(t1 - t0, 2), learn_s=round(t2 - t1, 2), heldout_s=round(t3 - t2, 2), wall_s=round(t3 - t0, 2))
        state.rounds.append(figures)
        value = _stopping_value(cfg, rewards, figures)
        spec = cfg.early_stopping
        state.update(value, min_delta=spec.min_delta if spec else 0.0, patience=spec.patience if spec else None)
        folder.info.write_text(json.dumps({"round": r, "model": current, **figures}, indent=1, default=str))
        _log_round(ctx, r, figures)
        state.save(ctx.paths.trainer)
        _drop_unneeded_models(ctx, state)
        print(_round_line(cfg, r, figures), flush=True)
    best = state.best_round if (cfg.early_stopping and cfg.early_stopping.restore_best and state.best_round) else state.done
    final = _round_model(ctx, best) if best else start
    path = _final_model(ctx, final, tok, state.done)
    metrics.update(_stage_metrics(cfg, state, best))
    metrics.update(
        end_scorecard(held, cfg, ctx, path, scored_as=f"round{best}" if held.card and f"round{best}" in held.card.samples else None)
    )
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)


# --- one round -----------------------------------------------------------------------------------------------------


def _round_folder(ctx: StageContext, r: int) -> RoundLayout:
    folder = ctx.paths.round(r)
    folder.root.mkdir(parents=True, exist_ok=True)
    return folder


def _tries(cfg, ctx: StageContext, model, tok, rows, rewards, r: int, seed: int) -> Tries:
    """Sample and score the round's tries (or read them back: a round cut short during training keeps its samples)."""
    import torch

    from rlft.ppo.rollout import neutral_generation_config
    from rlft.training.shared_prefix import generating_with_shared_prompts

    saved = _round_folder(ctx, r).samples
    spec = cfg.sampling
    prompts, columns = prompts_of(rows)
    k = spec.completions
    if saved.exists():
        return _read_tries(saved, len(prompts), k, [x.reward.__name__ for x in rewards])
    print(f"[{cfg.name}] round {r}: sampling {k} completions for each of {len(prompts)} training prompts ...", flush=True)
    flat_prompts = [p for p in prompts for _ in range(k)]
    torch.manual_seed(seed * 1000 + r)
    with neutral_generation_config(model), generating_with_shared_prompts(model):  # each prompt prefilled once for its k tries
        gen = generate(
            model,
            tok,
            flat_prompts,
            max_new_tokens=spec.max_new_tokens,
            batch_size=spec.batch_size,
            temperature=spec.temperature,
            top_p=spec.top_p,
            desc=f"{cfg.name} round {r} tries",
        )
    flat_columns = {c: [v for v in values for _ in range(k)] for c, values in columns.items()}
    by_reward = {x.reward.__name__: _score(x, flat_prompts, gen.texts, flat_columns, gen.ids, r) for x in rewards}
    totals = weighted_totals(by_reward, {x.reward.__name__: x.weight for x in rewards})
    tries = Tries(
        texts=[gen.texts[i * k : (i + 1) * k] for i in range(len(prompts))],
        totals=[totals[i * k : (i + 1) * k] for i in range(len(prompts))],
        by_reward={name: [v[i * k : (i + 1) * k] for i in range(len(prompts))] for name, v in by_reward.items()},
    )
    _write_jsonl(
        saved,
        (
            {
                "row": i,
                "prompt": prompts[i],
                "completion": tries.texts[i][j],
                "reward": tries.totals[i][j],
                "rewards": {name: v[i][j] for name, v in tries.by_reward.items()},
            }
            for i in range(len(prompts))
            for j in range(k)
        ),
    )
    return tries


def _score(reward, prompts, texts, columns, ids, r: int) -> list[float | None]:
    """One reward on the round's tries, as TRL calls it; when it raises, the error names the round and the first row that fails."""
    try:
        return reward.reward(prompts, texts, **columns, completion_ids=ids, **TRL_LOGGERS)
    except RlftError as exc:
        for i in range(len(texts)):
            try:
                reward.reward(prompts[i : i + 1], texts[i : i + 1], **{c: v[i : i + 1] for c, v in columns.items()}, **TRL_LOGGERS)
            except RlftError as one:
                raise RlftError(
                    f"round {r}: {one.what} — on training try {i} (prompt {str(prompts[i])[:120]!r}, completion {texts[i][:120]!r})",
                    fix=one.fix,
                ) from exc
        raise


def _read_tries(path: Path, n: int, k: int, names: list[str]) -> Tries:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if len(rows) != n * k:
        raise RlftError(f"{path} holds {len(rows)} tries, not {n} x {k}", fix=f"delete {path.parent} to sample that round again")
    return Tries(
        texts=[[row["completion"] for row in rows[i * k : (i + 1) * k]] for i in range(n)],
        totals=[[row["reward"] for row in rows[i * k : (i + 1) * k]] for i in range(n)],
        by_reward={name: [[row["rewards"][name] for row in rows[i * k : (i + 1) * k]] for i in range(n)] for name in names},
    )


def _as_reply(prompt, text: str):
    """A completion in the prompt's shape: a message list for a conversation, text for text."""
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def _learn(cfg, ctx: StageContext, model, tok, rows, tries: Tries, r: int, seed: int) -> tuple[str | None, dict]:
    """Pick what the round learns from, train on it, save the model; ``(saved folder or None, the round's figures)``."""
    import datasets

    prompts, _ = prompts_of(rows)
    folder = _round_folder(ctx, r)
    if cfg.kind == "expert_iteration":
        keep = cfg.keep
        picked = keep_best(tries, min_reward=keep.min_reward, top_fraction=keep.top_fraction, per_prompt=keep.per_prompt)
        train_rows = [{"prompt": prompts[i], "completion": _as_reply(prompts[i], tries.texts[i][j])} for i, j in picked]
        records = [{**row, "row": i, "reward": tries.totals[i][j]} for row, (i, j) in zip(train_rows, picked, strict=True)]
        _write_jsonl(folder.kept, records)
        figures = round_figures(tries, bar=keep.min_reward)
        figures.update(
            kept=len(picked),
            kept_fraction=len({i for i, _ in picked}) / len(prompts),
            kept_mean_reward=sum(rec["reward"] for rec in records) / len(records) if records else math.nan,
        )
        what = "kept"
    else:
        spec = cfg.pairs
        picked = best_vs_worst(tries, min_margin=spec.min_margin, min_chosen_reward=spec.min_chosen_reward)
        train_rows = [
            {"prompt": prompts[i], "chosen": _as_reply(prompts[i], tries.texts[i][b]), "rejected": _as_reply(prompts[i], tries.texts[i][w])}
            for i, b, w in picked
        ]
        records = [
            {**row, "row": i, "chosen_reward": tries.totals[i][b], "rejected_reward": tries.totals[i][w]}
            for row, (i, b, w) in zip(train_rows, picked, strict=True)
        ]
        _write_jsonl(folder.pairs, records)
        figures = round_figures(tries, bar=spec.min_chosen_reward)
        figures.update(
            pairs=len(picked),
            kept_fraction=len(picked) / len(prompts),
            pair_margin=sum(rec["chosen_reward"] - rec["rejected_reward"] for rec in records) / len(records) if records else math.nan,
        )
        what = "pairs"
    if not train_rows:
        figures["note"] = (
            f"nothing to learn from: no try cleared the bar in round {r} ({len(prompts)} prompts x {cfg.sampling.completions}); "
            "the next round starts from the same model"
        )
        print(f"[{cfg.name}] round {r}: {figures['note']}", flush=True)
        return None, figures
    print(f"[{cfg.name}] round {r}: training on {len(train_rows)} {what} ...", flush=True)
    trainer = _trainer(cfg, ctx, model, tok, datasets.Dataset.from_list(train_rows), r, seed)
    use_rlft_progress(trainer, f"{cfg.name} round {r}")
    output = train_resumable(trainer, cfg)
    losses = [e["loss"] for e in trainer.state.log_history if isinstance(e.get("loss"), int | float)]
    figures.update({"train/steps": trainer.state.global_step, "train/runtime_s": output.metrics.get("train_runtime", 0.0)})
    if losses:
        figures["train/loss"] = float(losses[-1])
    path = save_model(trainer.model, tok, folder.root, trainer)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # the round's own checkpoints: the round is finished
    return path, figures


def _trainer(cfg, ctx: StageContext, model, tok, rows, r: int, seed: int):
    """The round's TRL trainer: SFT on the kept tries, or DPO on the pairs (the round's start model is the reference)."""
    args = trl_config_for(cfg, str(ctx.paths.trainer / f"round-{r}"), report_to="none", seed=seed + r)
    peft = lora_config(cfg, model=model)
    if cfg.kind == "expert_iteration":
        from trl import SFTTrainer

        return SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tok, peft_config=peft)
    from trl import DPOTrainer

    return DPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tok, peft_config=peft)


def _held_out_round(cfg, ctx: StageContext, held, model_path: str, tok, ref, r: int) -> dict:
    """The round's model on the held-out prompts: its rewards, KL to the stage's start, and the paired difference to the start."""
    from rlft.models import load_causal_lm

    if held.card is None:
        return {}
    model = load_causal_lm(model_path, trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=ctx.recipe.model_kwargs_for(cfg))
    prefix = f"round{r}"
    scored = held.card.score(model, tok, prefix, ref=ref)
    scored.update(held.card.deltas(after=prefix, seed=ctx.seed_for(cfg)))
    return {f"heldout/{k.removeprefix(prefix + '/')}": v for k, v in scored.items()}


def _stopping_value(cfg, rewards, figures: dict) -> float:
    """The round's held-out figure early stopping compares: the weighted reward (``eval/reward``) or one reward's mean."""
    metric = (cfg.early_stopping.metric if cfg.early_stopping else None) or "eval/reward"
    if metric == "eval/reward":
        means = [(x.weight, figures.get(f"heldout/reward/{x.reward.__name__}", math.nan)) for x in rewards]
        return sum(w * v for w, v in means)
    return figures.get("heldout/" + metric.removeprefix("eval/"), math.nan)


# --- models across rounds ----------------------------------------------------------------------------------------------


def _round_model(ctx: StageContext, r: int) -> str:
    """The model round ``r`` ended with (recorded in its ``round.json``: its own, or an earlier one when it learned nothing)."""
    return json.loads(_round_folder(ctx, r).info.read_text())["model"]


def _drop_unneeded_models(ctx: StageContext, state: RoundState) -> None:
    """Delete round models no later round needs: only the last round's model and the best round's are kept."""
    keep = {_round_model(ctx, state.done)}
    if state.best_round:
        keep.add(_round_model(ctx, state.best_round))
    for r in range(1, state.done + 1):
        folder = _round_folder(ctx, r).model
        if folder.exists() and str(folder) not in keep:
            shutil.rmtree(folder)


def _final_model(ctx: StageContext, source: str, tok, rounds: int) -> str:
    """The stage's own ``model/`` folder: the chosen round's model moved there (a copy of the start, when no round
    learned anything); the other rounds' models are deleted (their samples and figures stay)."""
    target = ctx.paths.model
    if target.exists():
        shutil.rmtree(target)
    if Path(source).is_relative_to(ctx.out_dir):
        shutil.move(source, target)
    else:
        shutil.copytree(source, target)
        tok.save_pretrained(target)
    for r in range(1, rounds + 1):
        shutil.rmtree(_round_folder(ctx, r).model, ignore_errors=True)
    return str(target)


# --- what the stage reports --------------------------------------------------------------------------------------------


def _log_round(ctx: StageContext, r: int, figures: dict) -> None:
    if ctx.tracker is not None:
        ctx.tracker.log({"round": r, **{f"round/{k}": v for k, v in figures.items() if isinstance(v, int | float)}}, step=r)


def _stage_metrics(cfg, state: RoundState, best: int) -> dict:
    out: dict = {"rounds/done": state.done, "rounds/best_round": best, "rounds/stopped_early": state.stopped and state.done < cfg.rounds}
    # the time the rounds spent trying and learning, held-out scoring left out: what GRPO's train/runtime_s measures
    out["train/runtime_s"] = sum(f.get("try_s", 0.0) + f.get("learn_s", 0.0) for f in state.rounds)
    for r, figures in enumerate(state.rounds, start=1):
        out.update({f"round{r}/{k}": v for k, v in figures.items() if isinstance(v, int | float)})
    return out


def _round_line(cfg, r: int, figures: dict) -> str:
    learned = f"kept {figures['kept']}" if "kept" in figures else f"pairs {figures.get('pairs', 0)}"
    shown = [f"[{cfg.name}] round {r}/{cfg.rounds} · {learned}", f"train mean reward {figures['train/mean_reward']:.3g}"]
    if "train/pass_at_k" in figures:
        shown.append(f"pass@{cfg.sampling.completions} {figures['train/pass_at_k']:.3g}")
    for key, v in figures.items():
        if key.startswith("heldout/reward/"):
            name = key.removeprefix("heldout/reward/")
            low, high = figures.get(f"heldout/delta/reward/{name}/ci_low"), figures.get(f"heldout/delta/reward/{name}/ci_high")
            delta = figures.get(f"heldout/delta/reward/{name}")
            ci = f" ({delta:+.3g} [{low:+.3g}, {high:+.3g}] vs start)" if delta is not None else ""
            shown.append(f"held-out {name} {v:.3g}{ci}")
    return " · ".join(shown) + f" · {figures['wall_s']:.0f} s"


def _write_jsonl(path: Path, records) -> None:
    """Write atomically: a file that is there is whole (a resumed round trusts it)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
