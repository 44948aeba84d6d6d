"""Self-improvement in rounds (issue 15): what a round keeps and pairs, and the expert-iteration / iterative-DPO stages
on the tiny model — kept rows clear the bar, round 2 starts from round 1's model, pairs never tie, resume redoes no
finished round, early stopping ends with the best round, a round with nothing to learn says so."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from test_ppo import Recorder
from test_stages import load_weights, make_ctx

from rlft.errors import RlftError
from rlft.recipe import recipe_from_dict
from rlft.stages import self_improve
from rlft.training.rounds import RoundState, Tries, best_vs_worst, keep_best, round_figures, round_prompts, weighted_totals

# ------------------------------------------------------------------ selection (pure)


def tries(*groups: list[tuple[str, float | None]]) -> Tries:
    return Tries(texts=[[t for t, _ in g] for g in groups], totals=[[v for _, v in g] for g in groups])


def test_weighted_totals_follow_trl_nansum_and_leave_unscored_tries_out():
    by_reward = {"a": [1.0, None, 0.0, None], "b": [0.5, 2.0, None, None]}
    assert weighted_totals(by_reward, {"a": 1.0, "b": 0.5}) == [1.25, 1.0, 0.0, None]


def test_keep_best_takes_each_prompts_best_at_or_above_the_bar_and_never_twice_the_same_text():
    t = tries(
        [("x", 0.2), ("y", 1.0), ("y", 1.0), ("z", 0.9)],  # best 1.0 twice with one text: kept once
        [("p", 0.5), ("q", None), ("r", 0.4)],  # nothing reaches 0.9
        [("s", None), ("t", 0.95)],
    )
    assert keep_best(t, min_reward=0.9, top_fraction=None) == [(0, 1), (2, 1)]
    assert keep_best(t, min_reward=0.9, top_fraction=None, per_prompt=3) == [(0, 1), (0, 3), (2, 1)]
    assert keep_best(t, min_reward=None, top_fraction=None) == [(0, 1), (1, 0), (2, 1)]


def test_top_fraction_is_lower_share_of_the_rounds_prompts_and_keeps_ties_at_the_cut():
    t = tries([("a", 0.1)], [("b", 0.9)], [("c", 0.5)], [("d", 0.5)], [("e", None)])
    assert keep_best(t, min_reward=None, top_fraction=0.2) == [(1, 0)]  # 1 of 5 prompts
    assert keep_best(t, min_reward=None, top_fraction=0.4) == [(1, 0), (2, 0), (3, 0)]  # 2 of 5; 0.5 ties at the cut
    assert keep_best(t, min_reward=0.6, top_fraction=0.4) == [(1, 0)]  # both bars


def test_pairs_are_best_against_worst_never_a_tie_nor_the_same_text():
    t = tries(
        [("a", 0.0), ("b", 1.0), ("c", 0.5), ("d", 0.0)],  # worst: the first of the two lowest
        [("e", 0.7), ("f", 0.7)],  # a tie: no pair
        [("g", 1.0), ("g", 0.0)],  # cannot happen with a deterministic reward, but a text never pairs with itself
        [("h", None), ("i", 0.3)],  # one scored try: no pair
        [("j", 0.6), ("k", 0.2)],
    )
    assert best_vs_worst(t) == [(0, 1, 0), (4, 0, 1)]
    assert best_vs_worst(t, min_margin=0.5) == [(0, 1, 0)]
    assert best_vs_worst(t, min_chosen_reward=0.8) == [(0, 1, 0)]


def test_round_figures_pass_at_k_and_best_of_k():
    t = tries([("a", 0.0), ("b", 1.0)], [("c", 0.0), ("d", None)], [("e", 0.5), ("f", 0.25)])
    f = round_figures(t, bar=1.0)
    assert f["train/mean_reward"] == pytest.approx((0 + 1 + 0 + 0.5 + 0.25) / 5)
    assert f["train/best_of_k_reward"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert f["train/pass_at_k"] == pytest.approx(1 / 3) and f["train/unscored"] == 1
    assert "train/pass_at_k" not in round_figures(t, bar=None)


def test_round_prompts_take_the_shuffled_rows_in_turn_and_wrap_around():
    rounds = [round_prompts(10, 4, r, seed=3) for r in (1, 2, 3)]
    flat = rounds[0] + rounds[1] + rounds[2][:2]
    assert sorted(flat) == list(range(10))  # rounds 1-3 see every row once before any repeats
    assert rounds[2][2:] == rounds[0][:2]
    assert round_prompts(10, None, 5, seed=3) == list(range(10)) and round_prompts(10, 4, 1, seed=4) != rounds[0]


def test_round_state_patience_and_its_checkpoint_marker(tmp_path):
    state = RoundState()
    for value in (0.2, 0.5, 0.5, 0.4):
        state.rounds.append({"v": value})
        state.update(value, patience=2)
    assert (state.best_round, state.best, state.without_improvement, state.stopped) == (2, 0.5, 2, True)
    folder = state.save(tmp_path / "trainer")
    from rlft.training.checkpoints import last_checkpoint

    assert folder.name == "checkpoint-4" and last_checkpoint(tmp_path / "trainer") == folder  # the pipeline keeps the stage folder
    assert RoundState.load(folder) == state and RoundState.load(None) == RoundState()
    nan_state = RoundState(rounds=[{}])
    assert nan_state.update(math.nan) is False and nan_state.best_round is None


# ------------------------------------------------------------------ the stages on the tiny model

# The reward: the share of lowercase letters in the completion (graded, deterministic, cheap). Held-out prompts say
# "heldout": there it returns a scripted sequence when SCRIPT is set (for the early-stopping test).
REWARD = """
import json, os, string
from pathlib import Path

def lower_share(prompts, completions, **kw):
    return [sum(ch in string.ascii_lowercase for ch in c[0]["content"]) / max(1, len(c[0]["content"])) for c in completions]

def scripted(prompts, completions, **kw):
    held = "heldout" in prompts[0][-1]["content"]
    if not held:
        return lower_share(prompts, completions)
    state = Path(os.environ["SCRIPT"])
    calls = json.loads(state.read_text())
    value = calls.pop(0)
    state.write_text(json.dumps(calls))
    return [value] * len(completions)

def fails_on_one_prompt(prompts, completions, **kw):
    if any(p[-1]["content"] == os.environ["FAIL_PROMPT"] for p in prompts):
        raise ValueError("cannot score this one")
    return [0.0] * len(completions)
"""


def si_recipe(tiny_model, tmp_path: Path, kind: str, reward: str = "lower_share", **stage):
    write_jsonl(tmp_path / "train.jsonl", [{"prompt": [{"role": "user", "content": f"say {i}"}]} for i in range(16)])
    write_jsonl(tmp_path / "held.jsonl", [{"prompt": [{"role": "user", "content": f"heldout {i}"}]} for i in range(6)])
    (tmp_path / "rw.py").write_text(REWARD)
    base = {
        "name": "si",
        "kind": kind,
        "data": "train.jsonl",
        "eval_data": "held.jsonl",
        "rewards": [f"./rw.py:{reward}"],
        "rounds": 2,
        "sampling": {"prompts": 6, "completions": 4, "max_new_tokens": 8, "batch_size": 24},
        "scorecard": {"prompts": 6, "max_new_tokens": 8},
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 5e-3},
    }
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "tracking": {"mode": "disabled"}, "stages": [{**base, **stage}]})
    return recipe, recipe.stage("si")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Watch:
    """Record each round's start-model folder and weights, and each saved round model's weights, around the real functions."""

    def __init__(self, monkeypatch):
        self.loaded: list[tuple[str | None, dict]] = []
        self.saved: list[tuple[str, dict]] = []
        self.trained = 0
        load, save, trainer = self_improve.load_start_model, self_improve.save_model, self_improve._trainer

        def load_start_model(ctx, cfg, ref=None):
            model, tok = load(ctx, cfg, ref=ref)
            self.loaded.append((ref, {k: v.clone() for k, v in model.state_dict().items()}))
            return model, tok

        def save_model(model, tok, out_dir, trainer=None):
            path = save(model, tok, out_dir, trainer)
            self.saved.append((path, load_weights(path)))
            return path

        def build(*args, **kwargs):
            self.trained += 1
            return trainer(*args, **kwargs)

        monkeypatch.setattr(self_improve, "load_start_model", load_start_model)
        monkeypatch.setattr(self_improve, "save_model", save_model)
        monkeypatch.setattr(self_improve, "_trainer", build)


def same(a: dict, b: dict) -> bool:
    """The same weights (a loaded model's state dict also lists tied weights, which a saved file holds once)."""
    common = a.keys() & b.keys()
    return len(common) >= min(len(a), len(b)) and all(torch.equal(a[k], b[k]) for k in common)


def test_expert_iteration_keeps_only_tries_above_the_bar_and_round_two_starts_from_round_one(tiny_model, tmp_path, monkeypatch):
    # seed 1: tries where the bar keeps some and drops others in both rounds (the draws depend on the seed)
    recipe, cfg = si_recipe(tiny_model, tmp_path, "expert_iteration", keep={"min_reward": 0.25}, seed=1)
    ctx = make_ctx(recipe, tmp_path, "si")
    ctx.tracker = Recorder()
    watch = Watch(monkeypatch)
    result = self_improve.run(cfg, ctx)
    m = result.metrics
    for r in (1, 2):
        folder = ctx.out_dir / "rounds" / f"round-{r}"
        samples, kept = jsonl(folder / "samples.jsonl"), jsonl(folder / "kept.jsonl")
        assert len(samples) == 6 * 4
        for s in samples:  # every try scored, by the reward itself
            text = s["completion"]
            assert s["reward"] == pytest.approx(sum(ch in string.ascii_lowercase for ch in text) / max(1, len(text)))
        expected = []  # per prompt row: its best try if it reaches 0.25 (the first of equal bests)
        for row in range(6):
            group = [s for s in samples if s["row"] == row]
            best = max(group, key=lambda s: s["reward"])
            if best["reward"] >= 0.25:
                expected.append((row, best["completion"]))
        assert [(k["row"], k["completion"][0]["content"]) for k in kept] == expected
        assert all(k["reward"] >= 0.25 for k in kept) and m[f"round{r}/kept"] == len(expected)
    assert 0 < m["round1/kept"] < 6, "the bar must keep some tries and drop others, or this test shows nothing"
    # Round 1 started from the stage's start; round 2 from the model round 1 saved (its exact weights), which differ.
    (ref1, w1), (ref2, w2) = watch.loaded[0], watch.loaded[1]
    assert ref1 is None and ref2 == watch.saved[0][0] and same(w2, watch.saved[0][1]) and not same(w2, w1)
    assert same(load_weights(result.model_path), watch.saved[1][1])  # the stage ends with round 2's model
    # W&B: one point per round, the round as its step; the stage reports the last round as eval/ with its interval
    points = [(step, v) for step, v in ctx.tracker.history if "round" in v]
    assert [step for step, _ in points] == [1, 2] and all(v["round"] == step for step, v in points)
    assert points[1][1]["round/heldout/reward/lower_share"] == m["round2/heldout/reward/lower_share"] == m["eval/reward/lower_share"]
    assert m["eval/delta/reward/lower_share/n"] == 6 and "eval/delta/reward/lower_share/ci_low" in m and m["rounds/done"] == 2
    assert (ctx.out_dir / "samples.jsonl").exists() and not (ctx.out_dir / "rounds" / "round-1" / "model").exists()


def test_iterative_dpo_pairs_each_prompts_best_against_its_worst_never_a_tie(tiny_model, tmp_path, monkeypatch):
    recipe, cfg = si_recipe(tiny_model, tmp_path, "iterative_dpo", rounds=1)
    ctx = make_ctx(recipe, tmp_path, "si")
    watch = Watch(monkeypatch)
    result = self_improve.run(cfg, ctx)
    folder = ctx.out_dir / "rounds" / "round-1"
    samples, pairs = jsonl(folder / "samples.jsonl"), jsonl(folder / "pairs.jsonl")
    expected = []
    for row in range(6):
        group = [s for s in samples if s["row"] == row]
        best = max(group, key=lambda s: s["reward"])
        worst = min(group, key=lambda s: s["reward"])
        if best["reward"] > worst["reward"]:
            expected.append((row, best["completion"], worst["completion"]))
    got = [(p["row"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs]
    assert got == expected and len(got) >= 1
    assert all(p["chosen_reward"] > p["rejected_reward"] and p["chosen"] != p["rejected"] for p in pairs)
    assert result.metrics["round1/pairs"] == len(pairs) and watch.trained == 1
    assert not same(load_weights(result.model_path), watch.loaded[0][1])  # DPO moved the weights


def test_a_round_with_nothing_above_the_bar_says_so_and_trains_nothing(tiny_model, tmp_path, monkeypatch, capsys):
    recipe, cfg = si_recipe(tiny_model, tmp_path, "expert_iteration", rounds=1, keep={"min_reward": 2.0})
    ctx = make_ctx(recipe, tmp_path, "si")
    watch = Watch(monkeypatch)
    result = self_improve.run(cfg, ctx)
    info = json.loads((ctx.out_dir / "rounds" / "round-1" / "round.json").read_text())
    assert info["kept"] == 0 and "nothing to learn from" in info["note"] and "nothing to learn from" in capsys.readouterr().out
    assert watch.trained == 0 and jsonl(ctx.out_dir / "rounds" / "round-1" / "kept.jsonl") == []
    assert same(load_weights(result.model_path), watch.loaded[0][1])  # the stage ends where it started
    assert result.metrics["eval/delta/reward/lower_share"] == 0.0


def test_a_reward_that_raises_names_the_reward_round_and_try(tiny_model, tmp_path, monkeypatch):
    rows = round_prompts(16, 6, 1, seed=42)  # round 1's training rows (the recipe's seed)
    monkeypatch.setenv("FAIL_PROMPT", f"say {rows[2]}")  # the third prompt: its first try is try 2 x 4 = 8
    recipe, cfg = si_recipe(tiny_model, tmp_path, "expert_iteration", reward="fails_on_one_prompt", keep={"min_reward": 0.0})
    with pytest.raises(RlftError) as err:
        self_improve.run(cfg, make_ctx(recipe, tmp_path, "si"))
    text = str(err.value)
    assert "fails_on_one_prompt" in text and "cannot score this one" in text, text
    assert "round 1" in text and "training try 8" in text and f"say {rows[2]}" in text, text


def test_resume_after_a_kill_between_rounds_redoes_no_finished_round(tiny_model, tmp_path, monkeypatch):
    recipe, cfg = si_recipe(tiny_model, tmp_path, "expert_iteration", keep={"min_reward": 0.0})
    ctx = make_ctx(recipe, tmp_path, "si")
    held_out_round = self_improve._held_out_round

    def killed_in_round_two(cfg, ctx, held, path, tok, ref, r):
        if r == 2:
            raise KeyboardInterrupt  # the stage process dies after round 2 trained, before it finished
        return held_out_round(cfg, ctx, held, path, tok, ref, r)

    monkeypatch.setattr(self_improve, "_held_out_round", killed_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        self_improve.run(cfg, ctx)
    from rlft.training.checkpoints import last_checkpoint

    assert last_checkpoint(ctx.paths.trainer).name == "checkpoint-1"  # what makes the pipeline keep the folder and resume
    round1 = (ctx.out_dir / "rounds" / "round-1" / "samples.jsonl").read_text()
    figures1 = json.loads((ctx.out_dir / "rounds" / "round-1" / "round.json").read_text())
    monkeypatch.setattr(self_improve, "_held_out_round", held_out_round)
    watch = Watch(monkeypatch)
    result = self_improve.run(cfg, ctx)
    # round 1 was not sampled or trained again: one trainer (round 2's), its samples and figures as they were
    assert watch.trained == 1 and (ctx.out_dir / "rounds" / "round-1" / "samples.jsonl").read_text() == round1
    assert [ref for ref, _ in watch.loaded] == [None, figures1["model"]]
    assert result.metrics["rounds/done"] == 2 and result.metrics["round1/kept"] == figures1["kept"]


def test_early_stopping_ends_with_the_best_rounds_model(tiny_model, tmp_path, monkeypatch):
    # held-out reward by call: start 0.1, round 1 0.5, round 2 0.3 -> no improvement, patience 1: stop after round 2
    script = tmp_path / "script.json"
    script.write_text(json.dumps([0.1, 0.5, 0.3, 0.9]))
    monkeypatch.setenv("SCRIPT", str(script))
    recipe, cfg = si_recipe(
        tiny_model, tmp_path, "expert_iteration", reward="scripted", rounds=3, keep={"min_reward": 0.0}, early_stopping={"patience": 1}
    )
    ctx = make_ctx(recipe, tmp_path, "si")
    watch = Watch(monkeypatch)
    result = self_improve.run(cfg, ctx)
    m = result.metrics
    assert (m["rounds/done"], m["rounds/best_round"], m["rounds/stopped_early"]) == (2, 1, True)
    assert json.loads(script.read_text()) == [0.9]  # round 3 never ran
    assert same(load_weights(result.model_path), watch.saved[0][1]) and not same(watch.saved[0][1], watch.saved[1][1])
    assert m["eval/reward/scripted"] == 0.5 and m["eval/delta/reward/scripted"] == pytest.approx(0.4)


# ------------------------------------------------------------------ through the pipeline, beside online DPO


def test_rounds_and_online_dpo_through_the_pipeline_tracked_compared_and_cached(tiny_model, tmp_path):
    import subprocess
    import sys

    import yaml

    from rlft.wandb_files import read_wandb_file

    recipe, _ = si_recipe(tiny_model, tmp_path, "expert_iteration", keep={"min_reward": 0.25})
    stages = [
        recipe.model_dump(mode="json", exclude_unset=True)["stages"][0],
        {
            "name": "online",
            "kind": "online_dpo",
            "init_from": "si",
            "data": "train.jsonl",
            "eval_data": "held.jsonl",
            "rewards": ["./rw.py:lower_share"],
            "scorecard": {"prompts": 6, "max_new_tokens": 8},
            "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 5e-3, "max_new_tokens": 8},
        },
    ]
    path = tmp_path / "rounds.yaml"
    path.write_text(yaml.safe_dump({"name": "rounds", "model": str(tiny_model), "tracking": {"project": "t"}, "stages": stages}))
    rlft = [sys.executable, "-m", "rlft.cli"]
    out = subprocess.run([*rlft, "run", str(path), "--run-id", "r", "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "rounds: tries kept" in out.stdout and "si (expert_iteration)" in out.stdout  # the per-round table of the summary
    run_dir = tmp_path / "runs" / "r"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["done", "done"]
    si, online = (s["metrics"] for s in summary["stages"])
    assert si["rounds/done"] == 2 and (run_dir / "si" / "rounds" / "round-2" / "kept.jsonl").exists()
    assert not (run_dir / "si" / "trainer").exists() and not list((run_dir / "si" / "rounds").glob("*/model"))
    assert online["train/steps"] == 2 and "eval/delta/reward/lower_share/ci_low" in online
    manifest = json.loads((run_dir / "online" / "manifest.json").read_text())
    assert manifest["start_model"] == str(run_dir / "si" / "model")
    # W&B: the rounds stage's history has one row per round, the round as the step
    wandb_id = summary["stages"][0]["wandb_run_id"]
    history = read_wandb_file(next((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}/run-{wandb_id}.wandb"))).history
    rounds = [row for row in history if "round" in row]
    assert [row["round"] for row in rounds] == [1, 2] and [row["_step"] for row in rounds] == [1, 2]
    assert rounds[1]["round/heldout/reward/lower_share"] == si["round2/heldout/reward/lower_share"]
    assert rounds[0]["round/kept"] == si["round1/kept"]
    # compare reads both stages like any other
    table = subprocess.run(
        [*rlft, "compare", "r", "--runs-dir", str(tmp_path / "runs"), "--format", "json"], capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    rows = {row["stage"]: row for row in json.loads(table.stdout)["rows"]}
    assert rows["si"]["reward/lower_share"] == si["eval/reward/lower_share"]
    assert rows["online"]["reward/lower_share"] == online["eval/reward/lower_share"]
    again = subprocess.run(
        [*rlft, "run", str(path), "--run-id", "r", "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True
    )
    assert again.returncode == 0 and [s["status"] for s in json.loads((run_dir / "summary.json").read_text())["stages"]] == [
        "cached",
        "cached",
    ]
