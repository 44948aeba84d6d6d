"""A stage's outputs: the LoRA adapter beside the merged model, adapter-only stages that later stages start from,
the model card, and the push to the Hub (offline here: the message, the command, and `rlft push` against a fake)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import sum_rows, write_jsonl
from typer.testing import CliRunner

from rlft.cli.app import app
from rlft.errors import RecipeError
from rlft.pipeline.run import run_pipeline
from rlft.recipe import load_recipe, recipe_from_dict

SFT_TRL = {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 5e-2}
CARD_SCORECARD = {"prompts": 8, "max_new_tokens": 6, "rewards": [{"name": "math_accuracy"}]}
LORA = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}}


def _run(tmp_path: Path, model: str, stages: list[dict], run_id: str) -> Path:
    write_jsonl(tmp_path / "sft.jsonl", sum_rows(24))
    recipe = {"name": "outputs", "model": model, "tracking": {"mode": "disabled"}, "stages": stages}
    path = tmp_path / "outputs.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: the autouse isolation of each test does not reach here
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.chdir(tmp_path)
        summary = run_pipeline(load_recipe(path), source=str(path), run_id=run_id, output_dir=str(tmp_path / "runs"))
    assert summary["status"] == "done", summary
    return tmp_path / "runs" / run_id


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    """One SFT stage with LoRA (merged model and adapter), a held-out reward for its scorecard, and push: (offline here)."""
    stage = {
        "name": "sft",
        "kind": "sft",
        "data": "sft.jsonl",
        "peft": LORA,
        "scorecard": CARD_SCORECARD,
        "push": {"hub_model_id": "me/tiny-sft", "private": True},
        "trl": SFT_TRL,
    }
    folder = tmp_path_factory.mktemp("lora")
    (folder / "base").symlink_to(tiny_model)  # a relative model path: the adapter must name its base absolutely
    return _run(folder, "./base", [stage], "r1")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_lora_stage_writes_model_and_adapter_and_they_agree(lora_run, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    stage = lora_run / "sft"
    assert (stage / "model" / "config.json").exists() and (stage / "model" / "model.safetensors").exists()
    assert (stage / "adapter" / "adapter_model.safetensors").exists()
    config = json.loads((stage / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model.resolve())  # the folder the stage started from, as an absolute path
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["adapter"] == "adapter" and manifest["result"]["model_path"] == str(stage / "model")

    ids = torch.tensor([[5, 20, 31, 47, 9, 60, 12]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    before = _logits(base, ids)
    with_adapter = PeftModel.from_pretrained(base, stage / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(stage / "model", dtype=torch.float32).eval()
    assert not torch.allclose(before, _logits(merged, ids), atol=1e-3)  # the adapter did change the model
    torch.testing.assert_close(_logits(with_adapter, ids), _logits(merged, ids), atol=1e-5, rtol=0)


def test_offline_push_says_what_it_would_upload_and_how(lora_run):
    push = json.loads((lora_run / "sft" / "manifest.json").read_text())["push"]
    command = f"rlft push {lora_run / 'sft'} --hub-model-id me/tiny-sft --private"
    assert push["status"] == "not pushed" and "HF_HUB_OFFLINE" in push["why"]
    assert push["command"] == command and push["folder"] == "model"


def _table_row(card_text: str, metric: str) -> list[str]:
    line = next(line for line in card_text.splitlines() if line.startswith(f"| {metric} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_model_card_holds_the_scorecard_with_intervals_and_parses(lora_run):
    from huggingface_hub import ModelCard

    stage = lora_run / "sft"
    metrics = json.loads((stage / "manifest.json").read_text())["result"]["metrics"]
    card = ModelCard.load(stage / "model" / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {"rlft", "sft"} <= set(card.data.tags)
    row = _table_row(card.text, "reward/math_accuracy")
    name = "reward/math_accuracy"
    # this model, start model, change, interval, n: each as the manifest holds it (cards round to 4 significant digits)
    expected = [metrics[f"eval/{name}"], metrics[f"baseline/{name}"], metrics[f"eval/delta/{name}"]]
    assert [float(x) for x in row[1:4]] == pytest.approx(expected, abs=5e-4)
    low, high = (float(x) for x in re.fullmatch(r"\[(.+), (.+)\]", row[4]).groups())
    assert (low, high) == pytest.approx((metrics[f"eval/delta/{name}/ci_low"], metrics[f"eval/delta/{name}/ci_high"]), abs=5e-4)
    assert int(row[5]) == metrics[f"eval/delta/{name}/n"] == 3  # 10% of 24 rows held out
    assert "trained on `" in card.text and "sft.jsonl" in card.text  # the data label
    assert "```yaml\nname: sft\nkind: sft\n" in card.text and "r: 4" in card.text  # the stage's own block
    assert re.search(r"rlft run \S*outputs\.yaml --run-id r1", card.text)
    assert re.search(r"trl \d", card.text) and re.search(r"transformers \d", card.text)
    adapter_card = ModelCard.load(stage / "adapter" / "README.md")
    assert adapter_card.data.library_name == "peft" and "lora" in adapter_card.data.tags


class FakeHub:
    """Records what `rlft push` asks of the Hub, and what the folder held when it was uploaded."""

    def __init__(self):
        self.calls: list[tuple] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs, sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())))


@pytest.mark.parametrize("adapter_only", [False, True])
def test_rlft_push_uploads_the_folder_with_its_card(lora_run, monkeypatch, adapter_only):
    from rlft.pipeline import outputs

    fake = FakeHub()
    monkeypatch.setattr(outputs, "hub_api", lambda: fake)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    stage = lora_run / "sft"
    args = ["push", str(stage), "--hub-model-id", "someone/tiny", *(["--adapter-only"] if adapter_only else [])]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    (create, repo, create_kw), (upload, upload_kw, files) = fake.calls
    assert (create, repo, create_kw) == ("create_repo", "someone/tiny", {"private": True, "exist_ok": True})  # private from push:
    folder = stage / ("adapter" if adapter_only else "model")
    assert upload == "upload_folder" and upload_kw["repo_id"] == "someone/tiny" and Path(upload_kw["folder_path"]) == folder
    assert "README.md" in files and ("adapter_model.safetensors" if adapter_only else "model.safetensors") in files


def test_rlft_push_without_a_token_says_how_to_log_in(lora_run, monkeypatch):
    from rlft.pipeline import outputs

    monkeypatch.setattr(outputs, "hub_api", lambda: pytest.fail("nothing may be uploaded"))
    monkeypatch.setattr(outputs, "hub_token", lambda: None)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    out = CliRunner().invoke(app, ["push", str(lora_run / "sft")])
    assert out.exit_code == 2 and "no Hugging Face token" in out.output and "hf auth login" in out.output


def test_push_without_a_token_prints_the_command_instead(tmp_path, monkeypatch, capsys):
    from rlft.pipeline import outputs
    from rlft.recipe.options import PushSpec

    (tmp_path / "sft" / "adapter").mkdir(parents=True)
    (tmp_path / "sft" / "adapter" / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(outputs, "hub_api", lambda: pytest.fail("nothing may be uploaded"))
    monkeypatch.setattr(outputs, "hub_token", lambda: None)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    note = outputs.push_after_stage(tmp_path / "sft", Path("runs/r1/sft"), PushSpec(hub_model_id="me/a", adapter_only=True))
    printed = capsys.readouterr().out
    assert note["status"] == "not pushed" and "no Hugging Face token" in note["why"]
    assert "runs/r1/sft/adapter (adapter_config.json) to me/a" in printed
    assert "rlft push runs/r1/sft --hub-model-id me/a --adapter-only" in printed


@pytest.fixture(scope="module")
def adapter_only_run(tiny_model, tmp_path_factory) -> Path:
    """sft1 saves only its adapter; sft2 starts from it with learning rate 0 (so its model is what it loaded) and LoRA."""
    stages = [
        {"name": "sft1", "kind": "sft", "data": "sft.jsonl", "peft": LORA, "save": {"merged": False}, "trl": SFT_TRL},
        {
            "name": "sft2",
            "kind": "sft",
            "init_from": "sft1",
            "data": "sft.jsonl",
            "peft": LORA,
            "scorecard": {"prompts": 0},
            "trl": {**SFT_TRL, "max_steps": 1, "learning_rate": 0.0},
        },
    ]
    return _run(tmp_path_factory.mktemp("adapter-only"), str(tiny_model), stages, "r2")


def test_a_stage_starts_from_an_adapter_only_stage(adapter_only_run, tiny_model):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from rlft.analysis.winrate import final_model
    from rlft.models import load_causal_lm

    sft1, sft2 = adapter_only_run / "sft1", adapter_only_run / "sft2"
    assert not (sft1 / "model").exists() and (sft1 / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((sft1 / "manifest.json").read_text())["result"]["model_path"] == str(sft1 / "adapter")
    assert json.loads((sft2 / "manifest.json").read_text())["start_model"] == str(sft1 / "adapter")
    # sft2's LoRA sits on sft1's model, so its adapter names sft1's adapter folder as its base
    assert json.loads((sft2 / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(sft1 / "adapter")

    # independently: the tiny model with sft1's adapter merged in, by peft itself
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    untrained = base.state_dict()[q_proj].clone()
    expected = PeftModel.from_pretrained(base, sft1 / "adapter").merge_and_unload().state_dict()  # merges into base itself
    saved = load_file(str(sft2 / "model" / "model.safetensors"))
    assert set(saved) <= set(expected)
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=0)
    assert not torch.allclose(saved[q_proj], untrained, atol=1e-4)  # sft1's adapter is in it
    ids = torch.tensor([[5, 20, 31, 47]])  # a chain of two adapters loads as the same model
    chained = load_causal_lm(str(sft2 / "adapter"))
    torch.testing.assert_close(_logits(chained, ids), _logits(AutoModelForCausalLM.from_pretrained(sft2 / "model"), ids), atol=1e-5, rtol=0)
    assert final_model(adapter_only_run, "sft1") == sft1 / "adapter"  # rlft compare --winrate takes it


def _problems(stages: list[dict], tiny_model: Path) -> str:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"name": "x", "model": str(tiny_model), "stages": stages})
    return info.value.render()


SFT = {"name": "sft", "kind": "sft", "data": "d.jsonl"}


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({**SFT, "save": {"merged": False}}, "save.merged: false keeps only the LoRA adapter, and this stage trains no LoRA adapter"),
        ({**SFT, "save": {"adapter": True}}, "save.adapter: this stage trains no LoRA adapter"),
        ({**SFT, "peft": LORA, "save": {"merged": False, "adapter": False}}, "saves nothing"),
        ({**SFT, "kind": "reward_model", "peft": LORA, "save": {"merged": False}}, "a reward_model stage's model is loaded whole"),
        (
            {
                **SFT,
                "kind": "expert_iteration",
                "peft": LORA,
                "rewards": ["math_accuracy"],
                "keep": {"min_reward": 1},
                "save": {"adapter": True},
            },
            "no one adapter over the stage's start model",
        ),
        ({**SFT, "peft": LORA, "save": {"merged": False}, "push": "me/x"}, "set push.adapter_only: true"),
        ({**SFT, "push": {"hub_model_id": "me/x", "adapter_only": True}}, "this stage saves no LoRA adapter"),
    ],
)
def test_save_combinations_that_cannot_work_are_refused(tiny_model, stage, message):
    assert message in _problems([stage], tiny_model)


def test_a_reward_model_cannot_start_from_an_adapter_only_stage(tiny_model):
    stages = [{**SFT, "peft": LORA, "save": {"merged": False}}, {**SFT, "name": "rm", "kind": "reward_model", "init_from": "sft"}]
    text = _problems(stages, tiny_model)
    assert "stages.rm.init_from" in text and "saves only its LoRA adapter" in text and "stages.sft.save.merged=true" in text


def test_trl_push_to_hub_is_refused_with_a_pointer_to_push(tiny_model, tmp_path):
    recipe = {"name": "x", "model": str(tiny_model), "stages": [{**SFT, "trl": {"push_to_hub": True, "hub_model_id": "me/x"}}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = CliRunner().invoke(app, ["plan", str(tmp_path / "r.yaml")])
    assert out.exit_code == 2
    assert "stages.sft.trl" in out.output and "trl.push_to_hub" in out.output and "push: {hub_model_id: OWNER/NAME}" in out.output
