"""Built-in rewards on hand-written samples, and reward references resolving (or failing) clearly."""

from __future__ import annotations

import pickle

import pytest

from rewards.format import TagFormat, answer_format
from rewards.math import extract_answer, math_accuracy
from rlft.errors import RlftError
from rlft.reward_refs import resolve_reward


def msgs(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_math_accuracy_cases():
    completions = [
        "37 + 48 = 85\n<answer>85</answer>",  # tagged
        "The answer is 85.0",  # last number, equal as a number
        "<answer>84</answer>",  # wrong
        "no number here",  # nothing to read
        msgs("#### 85"),  # conversational, GSM8K style
        "\\boxed{85}",
    ]
    assert math_accuracy(["q"] * 6, completions, answer=["85"] * 6) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_math_accuracy_uses_math_equivalence_and_skips_missing_reference():
    assert math_accuracy(["q", "q"], ["<answer>0.5</answer>", "<answer>1/2</answer>"], answer=["\\frac{1}{2}", "0.5"]) == [1.0, 1.0]
    assert math_accuracy(["q"], ["<answer>3</answer>"], answer=[""]) == [None]
    assert math_accuracy(["q"], ["<answer>7</answer>"], answer=["reasoning...\n#### 7"]) == [1.0]


def test_extract_answer_prefers_last_tag():
    assert extract_answer("<answer>1</answer> then <answer>2</answer>") == "2"
    assert extract_answer("1,234 apples") == "1234"


def test_answer_format():
    samples = [
        "x = 5\n<answer>5</answer>",
        "<answer></answer>",
        "<answer>5</answer> trailing words",
        "<answer>1</answer><answer>2</answer>",
        "5",
    ]
    assert answer_format(["q"] * 5, samples) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert TagFormat("final")(["q"], [msgs("ok <final>yes</final>")]) == [1.0]


def test_rewards_pickle():
    assert pickle.loads(pickle.dumps(answer_format))(["q"], ["<answer>1</answer>"]) == [1.0]
    r = resolve_reward("tag_format", kwargs={"tag": "final"})
    assert pickle.loads(pickle.dumps(r.reward))(["q"], ["<final>x</final>"]) == [1.0]


def test_resolve_registered_module_and_file(tmp_path):
    r = resolve_reward("math_accuracy", weight=2.0)
    assert r.reward.__name__ == "math_accuracy" and r.weight == 2.0 and r.required_columns == ("answer",)

    r = resolve_reward("rewards.format:TagFormat", kwargs={"tag": "sql"})
    assert r.reward(["q"], ["<sql>select 1</sql>"]) == [1.0]

    (tmp_path / "mine.py").write_text(
        "def polite(prompts, completions, **kwargs):\n    return [float('please' in c) for c in completions]\n"
    )
    r = resolve_reward("./mine.py:polite", base_dir=tmp_path)
    assert r.reward(["q", "q"], ["please", "no"]) == [1.0, 0.0]


def test_trl_style_reward_plugs_in_unchanged():
    # TRL's own reward functions have the same contract; one of them resolves as module:function.
    r = resolve_reward("trl.rewards:think_format_reward")
    assert r.reward(["q", "q"], [msgs("<think>\nhm\n</think>\nok"), msgs("no")]) == [1.0, 0.0]


def test_unknown_reward_and_bad_references(tmp_path):
    with pytest.raises(RlftError, match="did you mean math_accuracy"):
        resolve_reward("math_acc")
    with pytest.raises(RlftError, match="does not exist"):
        resolve_reward("./missing.py:fn", base_dir=tmp_path)
    (tmp_path / "bad.py").write_text("def r(x):\n    return [1.0]\n\nimport nonexistent_module_xyz\n")
    with pytest.raises(RlftError, match="importing reward file .*bad.py failed: ModuleNotFoundError"):
        resolve_reward("./bad.py:r", base_dir=tmp_path)
    (tmp_path / "sig.py").write_text("def r(x):\n    return [1.0]\n")
    with pytest.raises(RlftError, match="does not fit TRL's contract"):
        resolve_reward("./sig.py:r", base_dir=tmp_path)
    with pytest.raises(RlftError, match="has no reward 'nope'"):
        resolve_reward("rewards.math:nope")


def test_reward_outputs_are_checked(tmp_path):
    (tmp_path / "broken.py").write_text(
        "def short(prompts, completions, **kw):\n    return [1.0]\n"
        "def nan(prompts, completions, **kw):\n    return [1.0, float('nan')]\n"
        "def boom(prompts, completions, **kw):\n    raise ValueError('bad row')\n"
    )
    with pytest.raises(RlftError, match="returned 1 values for 2 completions"):
        resolve_reward("./broken.py:short", base_dir=tmp_path).reward(["a", "b"], ["x", "y"])
    with pytest.raises(RlftError, match=r"reward nan gave nan for sample 1"):
        resolve_reward("./broken.py:nan", base_dir=tmp_path).reward(["a", "b"], ["x", "y"])
    with pytest.raises(RlftError, match="reward boom raised ValueError: bad row"):
        resolve_reward("./broken.py:boom", base_dir=tmp_path).reward(["a"], ["x"])
    assert resolve_reward("answer_format").reward(["a"], ["<answer>1</answer>"]) == [1.0]
    (tmp_path / "np.py").write_text("import numpy as np\ndef r(prompts, completions, **kw):\n    return [np.float32(0.5), None]\n")
    assert resolve_reward("./np.py:r", base_dir=tmp_path).reward(["a", "b"], ["x", "y"]) == [0.5, None]  # numpy scalars are numbers


def test_trl_accuracy_reward_with_solution_column_plugs_in():
    r = resolve_reward("trl.rewards:accuracy_reward")
    assert r.required_columns == ("solution",)  # a column the stage's data must have
    completions = [msgs(r"My answer is \boxed{\frac{1}{3}}"), msgs(r"My answer is \boxed{\frac{1}{2}}")]
    assert r.reward(["q", "q"], completions, solution=[r"\frac{1}{3}", r"\frac{1}{3}"]) == [1.0, 0.0]


OPEN_R1_STYLE = '''
import re

def format_reward(completions, **kwargs):
    """open-r1 style: reads completion[0]["content"] of conversational completions."""
    pattern = r"^<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$"
    contents = [completion[0]["content"] for completion in completions]
    return [1.0 if re.match(pattern, c, re.DOTALL | re.MULTILINE) else 0.0 for c in contents]

def len_reward(completions, solution, **kwargs):
    contents = [completion[0]["content"] for completion in completions]
    return [-len(c) / 100 if s else None for c, s in zip(contents, solution)]
'''


def test_open_r1_style_functions_plug_in_unchanged(tmp_path):
    (tmp_path / "r1.py").write_text(OPEN_R1_STYLE)
    fmt = resolve_reward("./r1.py:format_reward", base_dir=tmp_path)
    good = msgs("<think>\nsum\n</think>\n<answer>\n4\n</answer>")
    assert fmt.reward(["q", "q"], [good, msgs("4")], solution=["4", "4"]) == [1.0, 0.0]
    ln = resolve_reward("./r1.py:len_reward", base_dir=tmp_path, weight=0.5)
    assert ln.required_columns == ("solution",) and ln.weight == 0.5
    assert ln.reward(["q", "q"], [msgs("x" * 50), msgs("y")], solution=["4", ""]) == [-0.5, None]
