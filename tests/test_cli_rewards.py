"""`rlft rewards list` and `rlft rewards test`: what a user runs before spending compute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import write_jsonl


def rlft(*args, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "rlft"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=300, env={"COLUMNS": "200", "PATH": ""})


def test_rewards_list_names_every_builtin(tmp_path):
    import rewards

    out = rlft("rewards", "list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in rewards.BUILTINS:
        assert name in out.stdout
    assert "class (takes kwargs)" in out.stdout and "rewards.math" in out.stdout


def test_rewards_test_scores_samples_and_fails_on_broken_rewards(tmp_path):
    out = rlft(
        "rewards", "test", "math_accuracy", "--completion", "<answer>4</answer>", "--completion", "5", "--column", "answer=4", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "│" in line]
    assert rows[0].split("│")[-2].strip() == "1" and rows[1].split("│")[-2].strip() == "0"

    write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "completion": "<final>x</final>"}])
    out = rlft("rewards", "test", "tag_format", "--data", "s.jsonl", "--kwargs", '{"tag": "final"}', cwd=tmp_path)
    assert out.returncode == 0 and "│ 1" in out.stdout, out.stdout + out.stderr

    (tmp_path / "bad.py").write_text("def r(prompts, completions, **kw):\n    return [float('nan')] * len(completions)\n")
    out = rlft("rewards", "test", "./bad.py:r", "--completion", "x", cwd=tmp_path)
    assert out.returncode == 1 and "reward r gave nan for sample 0" in out.stderr

    out = rlft("rewards", "test", "math_accuracy", "--completion", "x", cwd=tmp_path)
    assert out.returncode == 1 and "needs column(s) ['answer']" in out.stderr and "--column answer=VALUE" in out.stderr


def test_rewards_test_calls_the_reward_as_trl_does(tiny_model, tmp_path):
    """completion_ids (the completion's tokens and EOS, under --tokenizer) and TRL's log_metric/log_extra."""
    (tmp_path / "ids.py").write_text(
        "def n_tokens(prompts, completions, completion_ids, log_metric, log_extra, **kw):\n"
        "    log_metric('n', 1.0)\n"
        "    return [float(len(ids)) for ids in completion_ids]\n"
    )
    out = rlft(
        "rewards", "test", "./ids.py:n_tokens", "--completion", "abc", "--completion", "1+1=2", "--tokenizer", str(tiny_model), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "│" in line]
    assert [r.split("│")[-2].strip() for r in rows] == ["4", "6"]  # one token per character, plus EOS
