"""The reward library on hand-written samples (exact scores, pickling, recipe names) and the code sandbox's layers."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rewards.length
from rewards.code import LAYERS, CodeTests, extract_code, run_sandboxed, sandbox_layers
from rewards.format import JsonFormat, RegexMatch, RequiredTags
from rewards.length import LengthTarget, OverlongPenalty
from rewards.repetition import RepetitionPenalty
from rlft.reward_refs import resolve_reward

Q = ["q"]


def msgs(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def same_after_pickle(reward, completions, **columns):
    """The reward scores the same after a pickle round trip (TRL may ship rewards to other processes)."""
    scores = reward(Q * len(completions), completions, **columns)
    assert pickle.loads(pickle.dumps(reward))(Q * len(completions), completions, **columns) == scores
    return scores


def test_required_tags():
    samples = [
        "<think>hm</think><answer>4</answer>",
        "<answer>4</answer><think>hm</think>",  # out of order: the later tag (answer) counts as missing
        "<think> </think><answer>4</answer>",  # whitespace-only content is missing
        "no tags at all",
        msgs("<think>a</think> words <answer>b</answer>"),
        "<think></think><think>x</think><answer>y</answer>",  # a later non-empty section counts
    ]
    assert same_after_pickle(RequiredTags(tags=["think", "answer"]), samples) == [1.0, 0.5, 0.5, 0.0, 1.0, 1.0]
    assert RequiredTags(tags=["think", "answer"], ordered=False)(Q, [samples[1]]) == [1.0]
    assert RequiredTags(["a", "b", "c"])(Q, ["<a>1</a><c>3</c>"]) == [2 / 3]
    for bad in ([], "answer", ["no spaces"]):
        with pytest.raises(ValueError, match="tag"):
            RequiredTags(bad)


def test_json_format():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    samples = [
        '{"name": "Ada", "age": 36}',
        'Sure:\n```json\n{"name": "Ada"}\n```',  # fenced
        'The result is {"name": "Ada"}, done.',  # outermost {...} span
        '{"age": 3}',  # parses, fails the schema
        "[1, 2]",  # parses, wrong type
        '{"name": ',  # truncated
        "no json here",
        msgs('{"name": "x"}'),
    ]
    assert same_after_pickle(JsonFormat(schema=schema), samples) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 1.0]
    assert JsonFormat()(Q * 3, ["42", 'see [1, {"a": 2}] ok', "[note] {bad"]) == [1.0, 1.0, 0.0]
    assert JsonFormat(extract=False)(Q * 2, ['text {"a": 1}', ' {"a": 1} ']) == [0.0, 1.0]
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        JsonFormat(schema={"type": "no-such-type"})
    with pytest.raises(ValueError, match="schema must be"):
        JsonFormat(schema="object")


def test_regex_match():
    assert same_after_pickle(RegexMatch(r"\d{3}-\d{4}"), ["call 555-1234", "call me"]) == [1.0, 0.0]
    assert RegexMatch(r"yes|no", full=True, flags="i")(Q * 3, ["YES", "yes please", msgs("No")]) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=re.escape("pattern '(unclosed' is not a valid regular expression")):
        RegexMatch("(unclosed")
    with pytest.raises(ValueError, match="flags"):
        RegexMatch("a", flags="z")


def test_length_target():
    words = ["w " * n for n in (10, 12, 13, 7, 30, 0)]
    assert same_after_pickle(LengthTarget(target=10, tolerance=2), words) == [1.0, 1.0, 0.9, 0.9, 0.0, pytest.approx(0.2)]
    assert LengthTarget(target=5, unit="chars")(Q * 3, ["hello", "hell", msgs("hello world")]) == [1.0, 0.8, 0.0]
    assert LengthTarget(target=4, slope=0.25)(Q, ["a b c d e f"]) == [0.5]
    for kwargs, word in (({"target": 0}, "target"), ({"target": 5, "unit": "tokens"}, "unit"), ({"target": 5, "slope": -1}, "slope")):
        with pytest.raises(ValueError, match=word):
            LengthTarget(**kwargs)


def test_overlong_penalty(monkeypatch, caplog):
    ids = [[0] * n for n in (10, 80, 90, 100, 101)]
    assert same_after_pickle(OverlongPenalty(max_length=100, cache=20), ["x"] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]
    assert OverlongPenalty(max_length=10, cache=4, unit="chars")(Q * 2, ["x" * 7, "x" * 9]) == [-0.25, -0.75]
    assert OverlongPenalty(max_length=3, cache=0, unit="words")(Q * 2, ["a b c", "a b c d"]) == [0.0, -1.0]
    monkeypatch.setattr(rewards.length, "_warned_no_ids", False)
    with caplog.at_level(logging.WARNING, logger="rewards.length"):
        assert OverlongPenalty(max_length=4, cache=2)(Q * 2, ["a b", "a b c"]) == [0.0, -0.5]  # no ids: words
    assert "measuring words instead" in caplog.text
    with pytest.raises(ValueError, match="cache"):
        OverlongPenalty(max_length=10, cache=11)


def test_repetition_penalty():
    samples = ["The cat sat on the mat", "a a a a", "one", msgs("Go go GO go")]
    assert same_after_pickle(RepetitionPenalty(ngram_size=1), samples) == [pytest.approx(-1 / 6), -0.75, 0.0, -0.75]
    assert RepetitionPenalty(ngram_size=2, max_penalty=-0.5)(Q * 2, ["a b a b a b", "a b"]) == [-0.3, 0.0]
    assert RepetitionPenalty()(Q, ["the cat sat on the mat"]) == [0.0]
    with pytest.raises(ValueError, match="max_penalty must be <= 0"):
        RepetitionPenalty(max_penalty=0.5)
    with pytest.raises(ValueError, match="ngram_size"):
        RepetitionPenalty(ngram_size=0)


RESOLVE_CASES = [
    ("required_tags", {"tags": ["think", "answer"]}, {}, "<think>a</think><answer>b</answer>", 1.0),
    ("json_format", {"schema": {"type": "object"}}, {}, 'ok: {"a": 1}', 1.0),
    ("regex_match", {"pattern": "^ok", "flags": "i"}, {}, "OK then", 1.0),
    ("length_target", {"target": 2, "unit": "words"}, {}, "two words", 1.0),
    ("overlong_penalty", {"max_length": 4, "cache": 2, "unit": "words"}, {}, "a b c d e", -1.0),
    ("repetition_penalty", {"ngram_size": 1}, {}, "a a", -0.5),
    ("code_tests", {"timeout_s": 5}, {"tests": [["assert f() == 1"]]}, "```python\ndef f():\n    return 1\n```", 1.0),
]


@pytest.mark.parametrize(("name", "kwargs", "columns", "completion", "expected"), RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES])
def test_resolve_by_name(name, kwargs, columns, completion, expected):
    resolved = resolve_reward(name, kwargs=kwargs)
    assert resolved.reward.__name__ == name
    assert same_after_pickle(resolved.reward, [completion], **columns) == [expected]


# ---- code_tests and its sandbox ----------------------------------------------------------------------------------

ADD = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"


def test_extract_code():
    assert extract_code("x\n```python\na = 1\n```\ny\n```py\nb = 2\n```\n```text\nno\n```") == "b = 2\n"
    assert extract_code("```\nc = 3\n```") == "c = 3\n"
    assert extract_code("d = 4") == "d = 4"


def test_code_tests_scores_solutions():
    tests = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    rows = [tests, tests, "assert add(2, 2) == 4", None, tests]
    assert same_after_pickle(CodeTests(), [ADD, WRONG, msgs(ADD), ADD, "def add(:"], tests=rows) == [1.0, 0.0, 1.0, None, 0.0]
    assert CodeTests(partial=True)(Q, [WRONG], tests=[["assert add(1, 1) == 0", "assert add(1, 2) == 3"]]) == [0.5]
    assert CodeTests()(Q, [ADD]) == [None]  # no tests column at all
    # Exiting "successfully" before the tests ran is not a pass.
    assert CodeTests()(Q * 2, ["import sys\nsys.exit(0)", "import os\nos._exit(0)"], tests=[tests, tests]) == [0.0, 0.0]
    # Files inside its own temp dir are fine.
    assert CodeTests()(Q, ["open('a.txt', 'w').write('hi')"], tests=["assert open('a.txt').read() == 'hi'"]) == [1.0]


def test_code_tests_arguments_and_failures(monkeypatch, caplog):
    for kwargs, word in (({"timeout_s": 0}, "timeout_s"), ({"memory_mb": 10}, "memory_mb"), ({"tests_column": ""}, "tests_column")):
        with pytest.raises(ValueError, match=word):
            CodeTests(**kwargs)
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert CodeTests()(Q, ["import os"], tests=["assert 'HF_TOKEN' not in os.environ"]) == [1.0]  # no secrets inherited
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING, logger="rewards.code"):
        assert CodeTests()(Q, [ADD], tests=["assert True"]) == [0.0]  # a broken sandbox scores 0.0, never raises
    assert "sandbox failed" in caplog.text


def test_sandbox_stops_runaway_time_and_memory():
    start = time.monotonic()
    loops = ["while True:\n    pass", "import time\ntime.sleep(60)"]  # CPU-bound, then idle (only the wall clock stops it)
    assert CodeTests(timeout_s=1, workers=2)(Q * 2, loops, tests=["assert True"] * 2) == [0.0, 0.0]
    assert time.monotonic() - start < 5
    start = time.monotonic()
    bombs = ["x = bytearray(10**10)", "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"]
    assert CodeTests(timeout_s=20, memory_mb=256)(Q * 2, bombs, tests=["assert True"] * 2) == [0.0, 0.0]
    assert time.monotonic() - start < 10  # stopped by RLIMIT_AS (MemoryError), long before the timeout


def layer_id(layers) -> str:
    return layers if isinstance(layers, str) else "+".join(layers) or "none"


@pytest.fixture(scope="module")
def active_layers():
    return sandbox_layers()


def escape_attempt(code: str, layers, active_layers) -> float:
    """Score ``code`` (with a test that always passes) under all layers, or only under ``layers``."""
    if layers == "all":
        return CodeTests(timeout_s=5)(Q, [code], tests=["assert True"])[0]
    if not set(layers) <= set(active_layers):
        pytest.skip(f"sandbox layer {layers} is not available on this machine")
    passed, info = run_sandboxed(code, ["assert True"], timeout_s=5, layers=layers)
    assert info["layers"] == list(layers)
    return float(all(passed) and info["returncode"] == 0)


def test_sandbox_layers(active_layers):
    assert "audit" in active_layers and set(active_layers) <= set(LAYERS)
    # Root is exempt from RLIMIT_NPROC, so with no optional layer a fork goes through: the layers below are needed.
    assert escape_attempt("import os\nos.fork()", (), active_layers) == (1.0 if os.geteuid() == 0 else 0.0)


@pytest.mark.parametrize("layers", ["all", (), ("audit",), ("seccomp",), ("landlock",)], ids=layer_id)
def test_harmless_code_passes_under_each_layer_alone(layers, active_layers):
    """The positive control: the blocking tests below mean something only if honest code still scores 1."""
    assert escape_attempt("import json, math\nx = json.loads('[1, 2]')\nassert math.fsum(x) == 3", layers, active_layers) == 1.0


@pytest.mark.parametrize("layers", ["all", ("audit",), ("seccomp",)], ids=layer_id)
@pytest.mark.parametrize("attempt", ["import os\nos.fork()", "import subprocess\nsubprocess.run(['ls'])"], ids=["fork", "subprocess"])
def test_sandbox_blocks_fork(attempt, layers, active_layers):
    assert escape_attempt(attempt, layers, active_layers) == 0.0


@pytest.mark.parametrize("layers", ["all", ("audit",), ("landlock",)], ids=layer_id)
@pytest.mark.parametrize("how", ["open({p!r}, 'w')", "import os\nos.open({p!r}, os.O_CREAT | os.O_WRONLY)"], ids=["open", "os.open"])
def test_sandbox_blocks_writes_outside(how, layers, active_layers, tmp_path):
    target = tmp_path / "escaped.txt"
    assert escape_attempt(how.format(p=str(target)), layers, active_layers) == 0.0
    assert not target.exists()


@pytest.mark.parametrize(
    ("how", "layers"),
    [
        *[(how, layers) for how in ("rename", "remove", "symlink") for layers in ("all", ("audit",), ("landlock",))],
        *[("chmod", layers) for layers in ("all", ("audit",))],  # landlock does not cover chmod (the docstring says so)
    ],
    ids=lambda v: v if isinstance(v, str) else layer_id(v),
)
def test_sandbox_blocks_changes_outside_by_other_calls(how, layers, active_layers, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    victim.chmod(0o600)
    code = {
        "rename": f"import os\nos.rename({str(victim)!r}, {str(tmp_path / 'moved.txt')!r})",
        "remove": f"import os\nos.remove({str(victim)!r})",
        "symlink": f"import os\nos.symlink({str(victim)!r}, {str(tmp_path / 'link.txt')!r})",
        "chmod": f"import os\nos.chmod({str(victim)!r}, 0o777)",
    }[how]
    assert escape_attempt(code, layers, active_layers) == 0.0
    assert victim.read_text() == "keep" and victim.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "moved.txt").exists() and not (tmp_path / "link.txt").is_symlink()


@pytest.mark.parametrize("layers", ["all", ("audit",), ("seccomp",), ("landlock",)], ids=layer_id)
def test_sandbox_blocks_network(layers, active_layers):
    if layers == ("landlock",) and ctypes.CDLL(None).syscall(444, None, 0, 1) < 4:  # landlock_create_ruleset: its ABI
        pytest.skip("landlock restricts TCP only from ABI 4")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2).sendall(b'hi')"
        assert escape_attempt(code, layers, active_layers) == 0.0
        server.settimeout(0.3)  # a connection made by the sandbox would be waiting in the backlog by now
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.parametrize("layers", ["all", ("audit",), ("seccomp",)], ids=layer_id)
def test_sandbox_blocks_signals_to_other_processes(layers, active_layers):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        assert escape_attempt(f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)", layers, active_layers) == 0.0
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


# A trainer-like process: its environment holds a key, its HOME a .netrc; it scores code that tries to read both.
_READER = """
import json, sys
from rewards.code import run_sandboxed
code, layers = sys.argv[1], tuple(sys.argv[2].split(",")) if sys.argv[2] else ()
passed, info = run_sandboxed(code, ["assert True"], timeout_s=10, layers=layers)
print(json.dumps([all(passed) and info["returncode"] == 0, info["layers"], info["output"][-300:]]))
"""


@pytest.mark.parametrize("target", ["environ", "netrc"])
def test_sandboxed_code_cannot_read_the_trainers_secrets(target, active_layers, tmp_path):
    if "landlock" not in active_layers:
        pytest.skip("landlock is not available on this machine (the code reward warns that reads are open)")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine api.wandb.ai login user password NETRC-SECRET-7\n")
    env = {"PATH": os.defpath, "HOME": str(home), "WANDB_API_KEY": "ENV-SECRET-7", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    read = {
        "environ": "import os\nassert b'ENV-SECRET-7' in open(f'/proc/{os.getppid()}/environ', 'rb').read()",
        "netrc": f"assert 'NETRC-SECRET-7' in open({str(home / '.netrc')!r}).read()",
    }[target]

    def attempt(layers: str):
        out = subprocess.run([sys.executable, "-c", _READER, read, layers], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    ok, layers, _ = attempt("audit")  # reads are open without landlock: the attempt works (the test can see a leak)
    assert ok and layers == ["audit"]
    ok, layers, output = attempt("seccomp,landlock,audit")
    assert not ok and "landlock" in layers and "PermissionError" in output


def test_sandboxed_code_still_imports_the_standard_library(active_layers):
    code = "import json, math, collections, re, decimal, fractions, datetime, statistics, hashlib\nx = math.sqrt(4)"
    assert CodeTests(timeout_s=10)(Q, [code], tests=["assert x == 2.0 and json.dumps([1]) == '[1]'"]) == [1.0]


def test_a_code_reward_warns_once_about_each_missing_kernel_layer(monkeypatch, caplog):
    import rewards.code as code

    monkeypatch.setattr(code, "_warned", None)
    monkeypatch.setattr(code, "sandbox_layers", lambda: ["seccomp", "audit"])  # a kernel without landlock
    with caplog.at_level(logging.WARNING, logger="rewards.code"):
        CodeTests(timeout_s=5)(Q, ["x = 1"], tests=["assert x == 1"])
        CodeTests(timeout_s=5)(Q, ["x = 1"], tests=["assert x == 1"])
    warnings = [r.getMessage() for r in caplog.records if "sandbox" in r.getMessage()]
    assert len(warnings) == 1 and "no landlock" in warnings[0] and ".netrc" in warnings[0]
