"""Pairwise win rates on tiny models whose greedy output is known, judged by a reward file whose scores are known."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import write_jsonl

from rlft.analysis.winrate import HEAD, PairResult, final_model, render_winrates, winrates
from rlft.errors import RlftError

# answer "7": A wins; "3": B wins; "5": both wrong, a tie; no answer: the judge does not apply.
ROWS = [
    {"prompt": "one", "answer": "7"},
    {"prompt": "two", "answer": "7"},
    {"prompt": "three", "answer": "3"},
    {"prompt": "four", "answer": "5"},
    {"prompt": "five", "answer": None},
]

# Written the way TRL's docs write a reward: the prompts are conversations, so each completion is one assistant message.
JUDGE = """
def first_char(prompts, completions, answer, **kwargs):
    return [None if not a else float(c[0]["content"][:1] == a) for c, a in zip(completions, answer)]


def length(prompts, completions, completion_ids, log_metric, **kwargs):  # what TRL passes every reward, required here
    assert len(completion_ids) == len(completions) and all(isinstance(t, int) for ids in completion_ids for t in ids)
    log_metric("length/mean", 0.0)
    return [float(len(c[0]["content"].replace(" ", ""))) for c in completions]
"""


def constant_model(src: Path, dst: Path, char: str) -> Path:
    """The tiny model's config and tokenizer, wired to say ``char`` after any prompt.

    The layers add nothing to the residual stream, every embedding is the first unit vector, and an
    untied head scores only ``char`` (on that unit), so the greedy completion is ``char`` repeated.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(src)
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    tok = AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()[:, 0] = 1.0
        model.lm_head.weight.zero_()[tok.convert_tokens_to_ids(char), 0] = 1.0
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def reward_model(src: Path, dst: Path) -> Path:
    """A random one-output sequence classifier on the tiny model's config: a reward model for ``model:PATH``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(1)
    config = LlamaConfig.from_pretrained(src, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def balance_reward_model(src: Path, dst: Path) -> Path:
    """A sequence classifier on the tiny model's config that prefers chats with as many '7's as '3's.

    Every embedding has 1 on unit 0; '7' adds +1 and '3' adds -1 on unit 1. Layer 1 attends uniformly
    (zero queries and keys) and copies the normed unit 1 (+-4 for '7'/'3', 0 otherwise) to unit 2; nothing
    else writes to the residual stream. At the chat's last token ('\\n', unit 0 only) unit 2 therefore
    holds ``m = 4 * (n7 - n3) / n`` over the chat's n tokens, and the head reads unit 0 after the final
    RMSNorm: ``score = 1 / sqrt(1 + m**2)``, highest (1.0) for a balanced chat.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig.from_pretrained(src, num_labels=1)
    model = LlamaForSequenceClassification(config)
    tok = AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        first = model.model.layers[0].self_attn
        first.q_proj.weight.zero_()
        first.k_proj.weight.zero_()
        first.v_proj.weight.zero_()[0, 1] = 1.0  # kv head 0, dim 0 <- unit 1
        first.o_proj.weight[2, 0] = 1.0  # unit 2 <- query head 0 (reads kv head 0), dim 0
        embed = model.model.embed_tokens.weight
        embed.zero_()[:, 0] = 1.0
        embed[tok.convert_tokens_to_ids("7"), 1] = 1.0
        embed[tok.convert_tokens_to_ids("3"), 1] = -1.0
        model.score.weight.zero_()[0, 0] = config.hidden_size**-0.5
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("winrate")
    a = constant_model(tiny_model, root / "a", "7")
    b = constant_model(tiny_model, root / "b", "3")
    a2 = root / "a2"
    shutil.copytree(a, a2)
    judge = root / "judge.py"
    judge.write_text(JUDGE)
    return {"a": a, "b": b, "a2": a2, "prompts": write_jsonl(root / "prompts.jsonl", ROWS), "judge": judge, "root": root}


@pytest.fixture(scope="module")
def three(setup):
    models = {"A": setup["a"], "B": setup["b"], "A2": setup["a2"]}
    return winrates(models, setup["prompts"], [f"{setup['judge']}:first_char"], max_new_tokens=4, batch_size=2)


def pair(result, a: str, b: str) -> PairResult:
    return next(p for p in result.pairs if (p.a, p.b) == (a, b))


def test_known_outputs_give_exact_counts(three):
    assert three.completions["A"] == ["7 7 7 7"] * 5
    assert three.completions["B"] == ["3 3 3 3"] * 5
    assert three.scores["A"] == [1.0, 1.0, 0.0, 0.0, None]
    assert three.scores["B"] == [0.0, 0.0, 1.0, 0.0, None]
    assert len(three.pairs) == 6  # every ordered pair

    ab, ba = pair(three, "A", "B"), pair(three, "B", "A")
    assert (ab.n, ab.judged, ab.wins_a, ab.wins_b, ab.ties, ab.not_judged) == (5, 4, 2, 1, 1, 1)
    assert ab.win_rate == pytest.approx(0.625)
    assert (ba.wins_a, ba.wins_b, ba.ties, ba.not_judged) == (ab.wins_b, ab.wins_a, ab.ties, ab.not_judged)
    assert ab.win_rate + ba.win_rate == pytest.approx(1.0)
    assert three.mean_score("A") == pytest.approx(0.5)
    assert three.mean_score("B") == pytest.approx(0.25)


def test_a_copy_ties_on_every_judged_prompt(three):
    same = pair(three, "A", "A2")
    assert three.completions["A2"] == three.completions["A"]
    assert (same.wins_a, same.wins_b, same.ties, same.not_judged, same.win_rate) == (0, 0, 4, 1, 0.5)
    a2b = pair(three, "A2", "B")
    assert (a2b.a, a2b.b, a2b.n, a2b.wins_a, a2b.wins_b, a2b.ties, a2b.not_judged) == ("A2", "B", 5, 2, 1, 1, 1)
    assert (same.ci_low, same.ci_high) == (0.5, 0.5)  # every judged prompt a tie: no uncertainty about 0.5


def test_win_rate_interval_is_a_bootstrap_over_the_judged_prompts(three):
    from rlft.evaluation.statistics import bootstrap_mean

    ab = pair(three, "A", "B")  # judged: win, win, loss, tie
    expected = bootstrap_mean([1.0, 1.0, 0.0, 0.5])
    assert (ab.ci_low, ab.ci_high) == (expected.ci_low, expected.ci_high) and ab.ci_low < 0.5 < ab.ci_high
    assert (PairResult.tally("a", "b", [1.0] * 30, [0.0] * 30).ci_low, PairResult.tally("a", "b", [None], [None]).ci_low) == (1.0, None)


def test_judges_add_up_and_none_is_left_out(setup):
    """first_char + length: the unanswerable prompt is now judged (length applies), a tie."""
    judge = [f"{setup['judge']}:first_char", f"{setup['judge']}:length"]
    result = winrates({"A": setup["a"], "B": setup["b"]}, setup["prompts"], judge, max_new_tokens=4, limit=5)
    assert result.scores["A"] == [5.0, 5.0, 4.0, 4.0, 4.0]
    ab = pair(result, "A", "B")
    assert (ab.judged, ab.wins_a, ab.wins_b, ab.ties) == (5, 2, 1, 2)
    assert ab.win_rate == pytest.approx(0.6)
    assert result.mean_score("B") == pytest.approx(4.2)


def test_random_model_ties_with_its_copy_under_a_reward_model(tiny_model, setup):
    copy = setup["root"] / "tiny_copy"
    shutil.copytree(tiny_model, copy, dirs_exist_ok=True)
    rm = reward_model(tiny_model, setup["root"] / "rm")
    result = winrates({"base": tiny_model, "copy": copy}, setup["prompts"], [f"model:{rm}"], max_new_tokens=8, limit=3)
    assert result.completions["base"] == result.completions["copy"]
    assert all(s is not None for s in result.scores["base"])
    same = pair(result, "base", "copy")
    assert (same.n, same.ties, same.not_judged, same.win_rate) == (3, 3, 0, 0.5)


def test_a_reward_model_judge_picks_the_winner_its_scores_imply(tiny_model, setup, tmp_path):
    """Two different models under a reward model whose score is known: the one that balances the prompt's '7's and '3's wins."""
    from transformers import AutoTokenizer

    rm = balance_reward_model(tiny_model, tmp_path / "rm")
    prompts = ["3333", "3 3", "777777", "hello", "x"]  # A ("7 7 7 7") balances the first two, B ("3 3 3 3") the third
    result = winrates(
        {"A": setup["a"], "B": setup["b"]},
        write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in prompts]),
        [f"model:{rm}"],
        max_new_tokens=4,
    )
    completions = {"A": "7 7 7 7", "B": "3 3 3 3"}
    assert result.completions == {label: [c] * len(prompts) for label, c in completions.items()}

    tok = AutoTokenizer.from_pretrained(rm)
    imbalance = {}  # per model, per prompt: n7 - n3 over the whole chat the reward model reads
    for label, completion in completions.items():
        chats = [[{"role": "user", "content": p}, {"role": "assistant", "content": completion}] for p in prompts]
        texts = [tok.apply_chat_template(chat, tokenize=False) for chat in chats]
        imbalance[label] = [p.count("7") + completion.count("7") - p.count("3") - completion.count("3") for p in prompts]
        n = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
        assert result.scores[label] == pytest.approx(
            [(1 + (4 * d / k) ** 2) ** -0.5 for d, k in zip(imbalance[label], n, strict=True)], abs=1e-4
        )
    assert (imbalance["A"], imbalance["B"]) == ([0, 2, 10, 4, 4], [-8, -6, 2, -4, -4])

    # The more balanced chat wins; '7 7 7 7' and '3 3 3 3' after a prompt with neither score exactly alike: a tie.
    wins_a = sum(abs(x) < abs(y) for x, y in zip(imbalance["A"], imbalance["B"], strict=True))
    wins_b = sum(abs(x) > abs(y) for x, y in zip(imbalance["A"], imbalance["B"], strict=True))
    assert (wins_a, wins_b) == (2, 1)
    ab, ba = pair(result, "A", "B"), pair(result, "B", "A")
    assert (ab.n, ab.judged, ab.wins_a, ab.wins_b, ab.ties, ab.not_judged) == (5, 5, wins_a, wins_b, 5 - wins_a - wins_b, 0)
    assert ab.win_rate == pytest.approx((2 + 0.5 * 2) / 5)
    assert (ba.wins_a, ba.wins_b, ba.ties, ba.win_rate) == (1, 2, 2, pytest.approx(0.4))


def test_tally_counts_one_sided_none_as_not_judged():
    p = PairResult.tally("a", "b", [1.0, None, 0.5, None, 0.0], [0.0, 2.0, 0.5, None, 1.0])
    assert (p.n, p.judged, p.wins_a, p.wins_b, p.ties, p.not_judged, p.win_rate) == (5, 3, 1, 1, 1, 2, 0.5)
    assert PairResult.tally("a", "b", [None], [None]).win_rate is None


def test_rendering(three):
    data = json.loads(render_winrates(three, "json"))
    assert data["prompts"] == 5 and data["models"]["B"]["mean_score"] == pytest.approx(0.25)
    assert {"model_a": "A", "model_b": "B", "wins_a": 2, "wins_b": 1, "ties": 1, "not_judged": 1, "win_rate_a": 0.625}.items() <= (
        data["pairs"][0].items()
    )

    rows = list(csv.reader(io.StringIO(render_winrates(three, "csv"))))
    assert rows[0] == list(HEAD)
    assert [r[:2] for r in rows[1:]] == [["A", "B"], ["A", "A2"], ["B", "A"], ["B", "A2"], ["A2", "A"], ["A2", "B"]]
    ab = pair(three, "A", "B")
    assert rows[1] == ["A", "B", "5", "4", "2", "1", "1", "1", "0.625", str(ab.ci_low), str(ab.ci_high), "0.5", "0.25"]

    markdown = render_winrates(three, "markdown").splitlines()
    assert len(markdown) == 8 and markdown[2].startswith("| A | B | 5 | 4 | 2 | 1 | 1 | 1 | 0.625 |")

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    assert render_winrates(three, "rich", console=console) is None
    shown = console.file.getvalue()
    assert "0.625" in shown and "on 5 prompts, judge" in shown and "mean score: A 0.500 · B 0.250 · A2 0.500" in shown

    with pytest.raises(RlftError, match="unknown format 'html'"):
        render_winrates(three, "html")


def test_rows_carry_completions_and_scores(three):
    row = three.rows()[2]
    assert row["prompt"] == [{"role": "user", "content": "three"}] and row["answer"] == "3"
    assert (row["A_completion"], row["A_score"], row["B_score"]) == ("7 7 7 7", 0.0, 1.0)


def test_errors_before_any_model_loads(setup, tmp_path):
    two = {"A": setup["a"], "B": setup["b"]}
    judge = [f"{setup['judge']}:first_char"]
    with pytest.raises(RlftError, match="at least 2 models, got 1"):
        winrates({"A": setup["a"]}, setup["prompts"], judge)
    with pytest.raises(RlftError, match=r"model B: .*missing is not a saved model folder"):
        winrates({"A": setup["a"], "B": tmp_path / "missing"}, setup["prompts"], judge)
    with pytest.raises(RlftError, match="unknown reward 'math_acuracy'") as err:
        winrates(two, setup["prompts"], ["math_acuracy"])
    assert "math_accuracy" in err.value.fix
    with pytest.raises(RlftError, match="no judge"):
        winrates(two, setup["prompts"], [])
    with pytest.raises(RlftError, match="names no reward model"):
        winrates(two, setup["prompts"], ["model:"])
    with pytest.raises(RlftError, match="not a folder with config.json"):
        winrates(two, setup["prompts"], [f"model:{tmp_path}"])

    no_prompt = write_jsonl(tmp_path / "questions.jsonl", [{"question": "1+1=", "answer": "2"}])
    with pytest.raises(RlftError, match=r"questions\.jsonl has no 'prompt' column") as err:
        winrates(two, no_prompt, judge)
    assert "question" in err.value.fix
    no_answer = write_jsonl(tmp_path / "bare.jsonl", [{"prompt": "1+1="}])
    with pytest.raises(RlftError, match=r"needs column\(s\) \['answer'\], which .*bare\.jsonl lacks"):
        winrates(two, no_answer, judge)
    with pytest.raises(RlftError, match="does not exist"):
        winrates(two, tmp_path / "nope.jsonl", judge)
    with pytest.raises(RlftError, match="limit must be at least 1"):
        winrates(two, setup["prompts"], judge, limit=0)


def write_run(run_dir: Path, stages: list[tuple[str, str, bool]]) -> Path:
    """A run folder: summary.json with (name, status, saved a model?) stages."""
    run_dir.mkdir(parents=True)
    for name, _, saved in stages:
        if saved:
            (run_dir / name / "model").mkdir(parents=True)
            (run_dir / name / "model" / "config.json").write_text("{}")
    summary = {"run_id": run_dir.name, "stages": [{"name": n, "kind": "sft", "status": s} for n, s, _ in stages]}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_final_model(tmp_path):
    run = write_run(tmp_path / "r1", [("sft", "done", True), ("rl", "cached", True), ("eval", "done", False), ("late", "failed", True)])
    assert final_model(run) == run / "rl" / "model"  # the eval stage saved none; the failed one's folder is stale
    assert final_model(run, "sft") == run / "sft" / "model"
    with pytest.raises(RlftError, match="no stage 'rm'") as err:
        final_model(run, "rm")
    assert "sft, rl, eval, late" in err.value.fix
    with pytest.raises(RlftError, match="stage 'eval' of run r1 has no finished saved model") as err:
        final_model(run, "eval")
    assert err.value.fix == "stages with a model: sft, rl"
    with pytest.raises(RlftError, match="no finished stage with a saved model"):
        final_model(write_run(tmp_path / "r2", [("eval", "done", False)]))
    with pytest.raises(RlftError, match="no summary.json"):
        final_model(tmp_path)
