"""`rlft env`: versions and machine for a bug report, as text and JSON; `rlft --help` stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch
from typer.testing import CliRunner

from rlft.cli.app import app
from rlft.cli.environment import CORE, OPTIONAL, package_versions

ROOT = Path(__file__).resolve().parents[1]


def test_env_json_names_versions_device_and_machine():
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert set(found) == {"python", "python_executable", "platform", "packages", "accelerator", "cpu"}
    assert found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert (
        list(found["packages"])
        == [*CORE, *OPTIONAL]
        == [
            *("rlft", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "wandb"),
            *("vllm", "deepspeed", "bitsandbytes", "flash-attn", "trackio", "tensorboard"),
        ]
    )
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "wandb"):
        assert found["packages"][name] == metadata.version(name)
    for name in OPTIONAL:
        try:
            expected = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected = "not installed"
        assert found["packages"][name] == expected
    acc = found["accelerator"]
    if torch.cuda.is_available():
        assert acc["device"] == "cuda" and acc["cuda"] == torch.version.cuda and len(acc["gpus"]) == torch.cuda.device_count()
    else:
        assert acc == {"device": "cpu", "cuda": None, "gpus": []}
    assert found["cpu"]["cores"] == os.cpu_count() and found["cpu"]["memory_gib"] > 0 and found["cpu"]["model"]


def test_absent_packages_say_so_and_text_lists_everything():
    assert package_versions(["trl", "rlft-no-such-package"]) == {"trl": metadata.version("trl"), "rlft-no-such-package": "not installed"}
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.output.splitlines())
    assert lines["trl"] == metadata.version("trl") and lines["torch"] == torch.__version__
    assert lines["device"] == ("cpu" if not torch.cuda.is_available() else lines["device"])
    assert {"python", "platform", "cpu", *CORE, *OPTIONAL} <= set(lines)


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom rlft.cli.app import app\n"
        "for args in (['--help'], ['env', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "env" in out.stdout  # the command is listed in --help
