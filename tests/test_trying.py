"""Trying a model (docs/trying_models.md): `rlft generate` writes the scorecard's greedy completions in input order,
`rlft chat` answers, streams, keeps the history across turns and clears it on /reset; runs, stages, adapter-only stages,
model folders and bundled: names resolve; bad references and prompts files end in rlft's own errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from typer.testing import CliRunner

from rlft.analysis.trying import ChatSession, Target, chat_loop, find_model, read_prompts
from rlft.cli.app import app
from rlft.errors import RlftError
from rlft.evaluation.scorecard import generate
from rlft.models import load_causal_lm, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    {"prompt": "2+3=", "answer": "5"},
    {"prompt": [{"role": "user", "content": "hello there"}], "answer": "hi"},
    {"prompt": "a longer prompt, to pad the others", "answer": "x"},
    {"prompt": "Q", "answer": "y"},
    {"prompt": "what is 7*6?", "answer": "42"},
]


def as_messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def greedy(path: Path | str, prompts: list, *, max_new_tokens: int, batch_size: int):
    """What the scorecard's code gives for these prompts: the reference every test compares with."""
    return generate(load_causal_lm(str(path)), load_tokenizer(str(path)), prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)


def lora_adapter(base: Path, dst: Path) -> Path:
    """A LoRA adapter on ``base`` with random (not zero) B, so that it changes the model: an adapter-only stage's folder."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(dst)
    AutoTokenizer.from_pretrained(base).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def lively(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with its matrices redrawn at std 0.2: its greedy answers differ from prompt to prompt (the tiny
    model's are one newline over and over), some end early with EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.2)
    dst = tmp_path_factory.mktemp("lively") / "model"
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(dst)
    return dst


@pytest.fixture
def runs(lively, tmp_path) -> Path:
    """runs/r1: sft (model/), lora (adapter/ only), eval (no model), late (failed); runs/r2: only a failed stage."""
    root = tmp_path / "runs"
    r1 = root / "r1"
    (r1 / "sft").mkdir(parents=True)
    (r1 / "sft" / "model").symlink_to(lively)
    lora_adapter(lively, r1 / "lora" / "adapter")
    (r1 / "eval").mkdir()
    stages = [("sft", "done"), ("lora", "cached"), ("eval", "done"), ("late", "failed")]
    (r1 / "summary.json").write_text(json.dumps({"run_id": "r1", "stages": [{"name": n, "kind": "sft", "status": s} for n, s in stages]}))
    (root / "r2").mkdir()
    (root / "r2" / "summary.json").write_text(json.dumps({"run_id": "r2", "stages": [{"name": "sft", "kind": "sft", "status": "failed"}]}))
    return root


def invoke(args: list[str], input: str | None = None):
    return CliRunner().invoke(app, args, input=input)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- which model -----------------------------------------------------------------------------------------------------


def test_a_run_resolves_to_its_last_stage_with_a_model_and_a_stage_to_its_folder(runs, tiny_model):
    r1 = runs / "r1"
    assert find_model("r1", runs) == Target("r1/lora", str(r1 / "lora" / "adapter"))  # eval saved none, late failed
    assert find_model("r1/sft", runs) == Target("r1/sft", str(r1 / "sft" / "model"))
    assert find_model(str(r1), Path("elsewhere")) == Target("r1/lora", str(r1 / "lora" / "adapter"))  # a run folder
    assert find_model(f"{r1}/sft/", Path("elsewhere")) == Target("r1/sft", str(r1 / "sft" / "model"))  # a stage folder
    assert find_model(str(r1 / "lora" / "adapter"), runs) == Target(str(r1 / "lora" / "adapter"), str(r1 / "lora" / "adapter"))
    assert find_model(str(tiny_model), runs) == Target(str(tiny_model), str(tiny_model))


def test_bundled_names_resolve_through_the_model_cache(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "smollm2-135m-instruct").symlink_to(tiny_model)  # already converted: no 35 s conversion
    target = find_model("bundled:smollm2-135m-instruct", tmp_path)
    assert target == Target("bundled:smollm2-135m-instruct", str(tmp_path / "cache" / "models" / "smollm2-135m-instruct"))


@pytest.mark.parametrize(
    "ref, what, fix",
    [
        ("nope", "no run 'nope'", "runs here: r1, r2; name a run id, a run folder, or RUN/STAGE; or a model folder, or bundled:"),
        ("r1/rm", "run r1 has no stage 'rm'", "its stages are: sft, lora, eval, late"),
        ("r1/eval", "stage 'eval' of run r1 has no finished saved model", "stages with a model: sft, lora"),
        ("r1/late", "stage 'late' of run r1 has no finished saved model", "stages with a model: sft, lora"),
        ("r2", "run r2 has no finished stage with a saved model", "finish the run"),
    ],
)
def test_unknown_runs_and_stages_without_a_model_are_refused(runs, ref, what, fix):
    with pytest.raises(RlftError) as err:
        find_model(ref, runs)
    assert what in err.value.what and fix in err.value.fix
    result = invoke(["generate", ref, "--prompts", "p.txt", "--out", "o.jsonl", "--runs-dir", str(runs)])
    assert result.exit_code == 2 and what in result.stderr and fix in result.stderr


def test_a_folder_that_is_neither_run_nor_model_is_named(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(RlftError, match=r"stuff is neither a run folder \(no summary.json\), a model folder \(no config.json\)") as err:
        find_model(str(tmp_path / "stuff"), tmp_path / "runs")
    assert "a stage's model/ or adapter/ folder" in err.value.fix


# --- generate --------------------------------------------------------------------------------------------------------


def test_generate_writes_the_scorecards_greedy_completions_in_input_order(runs, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "out" / "completions.jsonl"
    args = ["generate", "r1/sft", "--prompts", str(prompts), "--out", str(out), "--runs-dir", str(runs)]
    result = invoke([*args, "--batch-size", "2", "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    assert f"wrote 5 completion(s) of r1/sft to {out}" in result.stderr
    rows = read_jsonl(out)
    expected = greedy(runs / "r1" / "sft" / "model", [as_messages(p["prompt"]) for p in PROMPTS], max_new_tokens=6, batch_size=2)
    assert [r["prompt"] for r in rows] == [as_messages(p["prompt"]) for p in PROMPTS]  # input order, as chat messages
    assert [r["completion"] for r in rows] == expected.texts
    assert [r["tokens"] for r in rows] == expected.lengths
    assert [r["answer"] for r in rows] == [p["answer"] for p in PROMPTS]  # the file's other columns ride along
    assert list(rows[0]) == ["prompt", "completion", "tokens", "answer"]
    assert len(set(expected.texts)) > 1 and max(expected.lengths) == 6  # the comparison says something


def test_a_text_file_is_one_prompt_per_line_and_system_comes_first(runs, tmp_path):
    lines = ["2+3=", "", "what is 7*6?", "   ", "Q"]
    (tmp_path / "prompts.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["generate", "r1/sft", "--prompts", str(tmp_path / "prompts.txt"), "--out", str(out), "--runs-dir", str(runs)]
    result = invoke([*args, "--max-new-tokens", "5", "--system", "Be brief."])
    assert result.exit_code == 0, result.output
    expected_prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": t}] for t in ("2+3=", "what is 7*6?", "Q")]
    rows = read_jsonl(out)
    assert [r["prompt"] for r in rows] == expected_prompts  # blank lines skipped
    assert [r["completion"] for r in rows] == greedy(runs / "r1" / "sft" / "model", expected_prompts, max_new_tokens=5, batch_size=16).texts


def test_sampling_is_seeded_and_is_the_scorecards_sampling(runs, tmp_path):
    from transformers import set_seed

    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    base = ["generate", "r1/sft", "--prompts", str(prompts), "--runs-dir", str(runs), "--max-new-tokens", "8", "--temperature", "1.5"]
    outs = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        result = invoke([*base, "--top-p", "0.9", "--seed", seed, "--out", str(tmp_path / f"{name}.jsonl")])
        assert result.exit_code == 0, result.output
        outs[name] = [r["completion"] for r in read_jsonl(tmp_path / f"{name}.jsonl")]
    assert outs["a"] == outs["b"] != outs["c"]
    path = str(runs / "r1" / "sft" / "model")
    set_seed(7)
    sampled = generate(
        load_causal_lm(path),
        load_tokenizer(path),
        [as_messages(p["prompt"]) for p in PROMPTS],
        max_new_tokens=8,
        batch_size=16,
        temperature=1.5,
        top_p=0.9,
    )
    assert outs["a"] == sampled.texts
    assert outs["a"] != greedy(path, [as_messages(p["prompt"]) for p in PROMPTS], max_new_tokens=8, batch_size=16).texts


def test_an_adapter_only_stage_generates_as_its_merged_model(runs, lively, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "out.jsonl"
    result = invoke(["generate", "r1", "--prompts", str(prompts), "--out", str(out), "--runs-dir", str(runs), "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    assert "of r1/lora" in result.stderr  # the run's last stage with a model is the adapter-only one
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lively), runs / "r1" / "lora" / "adapter").merge_and_unload()
    messages = [as_messages(p["prompt"]) for p in PROMPTS]
    expected = generate(merged, load_tokenizer(str(lively)), messages, max_new_tokens=6, batch_size=16)
    assert [r["completion"] for r in read_jsonl(out)] == expected.texts
    assert expected.texts != greedy(lively, messages, max_new_tokens=6, batch_size=16).texts  # the adapter changed the answers


def test_a_model_folder_and_a_bundled_name_generate_too(runs, lively, tmp_path, monkeypatch):
    (tmp_path / "p.txt").write_text("hello\n")
    expected = greedy(lively, [as_messages("hello")], max_new_tokens=4, batch_size=16).texts
    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "smollm2-135m-instruct").symlink_to(lively)
    for i, ref in enumerate((str(lively), "bundled:smollm2-135m-instruct")):
        result = invoke(
            ["generate", ref, "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / f"{i}.jsonl"), "--max-new-tokens", "4"]
        )
        assert result.exit_code == 0, result.output
        assert [r["completion"] for r in read_jsonl(tmp_path / f"{i}.jsonl")] == expected


@pytest.mark.parametrize(
    "name, content, what, fix",
    [
        ("missing.jsonl", None, "prompts file {path} does not exist", "check the path given to --prompts"),
        ("prompts.yaml", "a: 1\n", "prompts file {path} has an unsupported type (.yaml)", "use a .json, .jsonl, .csv, .parquet, .txt file"),
        ("q.jsonl", '{"question": "2+3="}\n', "prompts file {path} has no 'prompt' column (its columns: question)", "rename the column"),
        ("q.csv", "question,answer\n2+3=,5\n", "has no 'prompt' column (its columns: question, answer)", "or write a .txt file"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": \n', "not valid JSON", "fix that line"),
        ("empty.txt", "\n  \n", "prompts file {path} has no prompts", "write one prompt per line"),
        ("latin.txt", b"ok\ncaf\xe9\n", "prompts file {path} is not UTF-8 text", "save it as UTF-8"),
    ],
)
def test_unreadable_prompts_files_are_named_before_any_model_loads(runs, tmp_path, monkeypatch, name, content, what, fix):
    import rlft.models

    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    monkeypatch.setattr(rlft.models, "load_causal_lm", lambda *a, **k: pytest.fail("a model loaded"))
    result = invoke(["generate", "r1/sft", "--prompts", str(path), "--out", str(tmp_path / "o.jsonl"), "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    assert what.format(path=path) in result.stderr and fix in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_the_latin1_line_is_named(tmp_path):
    (tmp_path / "p.txt").write_bytes(b"ok\nfine\ncaf\xe9\n")
    with pytest.raises(RlftError) as err:
        read_prompts(tmp_path / "p.txt")
    assert err.value.where == f"{tmp_path / 'p.txt'}, line 3"


def test_messages_files_and_system_reach_the_prompts(tmp_path):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "2+2?"}]
    write_jsonl(tmp_path / "m.jsonl", [{"messages": [*chat, {"role": "assistant", "content": "4"}]}])
    prompts, columns = read_prompts(tmp_path / "m.jsonl", system="S")
    assert prompts == [[{"role": "system", "content": "S"}, *chat]] and columns == {}


@pytest.mark.parametrize(
    "flags, what", [(["--temperature", "-1"], "--temperature must be 0 or more, got -1"), (["--top-p", "0"], "--top-p must be above 0")]
)
def test_bad_sampling_flags_are_refused(runs, tmp_path, flags, what):
    (tmp_path / "p.txt").write_text("hello\n")
    result = invoke(
        ["generate", "r1/sft", "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o.jsonl"), "--runs-dir", str(runs), *flags]
    )
    assert result.exit_code == 2 and what in result.stderr


def test_a_model_without_a_chat_template_is_refused(lively, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(lively, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    (tmp_path / "p.txt").write_text("hello\n")
    result = invoke(["generate", str(plain), "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "has no chat template" in result.stderr and "use an instruct/chat model" in result.stderr


# --- chat ------------------------------------------------------------------------------------------------------------


def render(tok, messages: list[dict]) -> str:
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_chat_answers_keeps_the_history_and_reset_clears_it(lively):
    tok = load_tokenizer(str(lively))
    session = ChatSession(load_causal_lm(str(lively)), tok, temperature=0.0, max_new_tokens=6)
    lines = iter(["first question", "  ", "second", "/reset", "third", "/exit", "never read"])
    written: list[str] = []
    turns = chat_loop(session, read=lambda prompt: next(lines), write=written.append)
    assert turns == 3

    first = [{"role": "user", "content": "first question"}]
    answer1 = greedy(lively, [first], max_new_tokens=6, batch_size=1).texts[0]
    second = [*first, {"role": "assistant", "content": answer1}, {"role": "user", "content": "second"}]
    answer2 = greedy(lively, [second], max_new_tokens=6, batch_size=1).texts[0]
    third = [{"role": "user", "content": "third"}]
    answer3 = greedy(lively, [third], max_new_tokens=6, batch_size=1).texts[0]
    # the second turn's prompt holds the first exchange; after /reset the third holds nothing before it
    assert session.prompts == [render(tok, first), render(tok, second), render(tok, third)]
    assert "<|im_start|>user\nfirst question<|im_end|>\n<|im_start|>assistant\n" + answer1 + "<|im_end|>" in session.prompts[1]
    assert session.history == [*third, {"role": "assistant", "content": answer3}]
    assert "".join(written) == f"{answer1}\n{answer2}\n(history cleared)\n{answer3}\n"
    assert len(written) > 6  # streamed: the answers arrived in pieces, as they were generated
    assert answer1 and answer1 != answer2


def test_chat_with_system_and_end_of_input(lively):
    tok = load_tokenizer(str(lively))
    session = ChatSession(load_causal_lm(str(lively)), tok, system="Be brief.", temperature=0.0, max_new_tokens=3)

    def read(prompt):
        if session.prompts:
            raise EOFError
        return "hi"

    assert chat_loop(session, read=read, write=lambda s: None) == 1
    assert session.prompts == [render(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])]


def test_rlft_chat_through_stdin(runs, lively):
    result = invoke(
        ["chat", "r1/sft", "--runs-dir", str(runs), "--temperature", "0", "--max-new-tokens", "6"], input="hello\n/bogus\n/reset\n"
    )
    assert result.exit_code == 0, result.output
    answer = greedy(lively, [as_messages("hello")], max_new_tokens=6, batch_size=1).texts[0]
    assert result.stdout == f"{answer}\nunknown command /bogus: /reset clears the history, /exit (or Ctrl-D) quits\n(history cleared)\n\n"
    assert f"chatting with r1/sft ({runs / 'r1' / 'sft' / 'model'}), greedy" in result.stderr


def test_rlft_chat_on_an_adapter_only_stage(runs, lively):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = invoke(["chat", "r1/lora", "--runs-dir", str(runs), "--temperature", "0", "--max-new-tokens", "6"], input="hello\n/exit\n")
    assert result.exit_code == 0, result.output
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lively), runs / "r1" / "lora" / "adapter").merge_and_unload()
    answer = generate(merged, load_tokenizer(str(lively)), [as_messages("hello")], max_new_tokens=6, batch_size=1).texts[0]
    assert result.stdout == f"{answer}\n"
    assert answer != greedy(lively, [as_messages("hello")], max_new_tokens=6, batch_size=1).texts[0]


def test_rlft_chat_refuses_an_unknown_run(runs):
    result = invoke(["chat", "r9", "--runs-dir", str(runs)], input="hello\n")
    assert result.exit_code == 2 and "no run 'r9'" in result.stderr and "runs here: r1, r2" in result.stderr


def test_chat_and_generate_help_do_not_import_torch():
    code = (
        "import sys\nfrom rlft.cli.app import app\n"
        "for args in (['chat', '--help'], ['generate', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "--max-new-tokens" in out.stdout and "--prompts" in out.stdout
