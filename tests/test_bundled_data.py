"""The bundled data sets: their words are package data files, read through importlib.resources, and the rows they give never drift."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from fnmatch import fnmatch
from importlib.resources import files

import pytest
import yaml
from conftest import ROOT

from rlft.data import bundled
from rlft.data.bundled import probe, sentiment, support

PACKAGE = "rlft.data.bundled"
READERS = {"support": support.catalog, "sentiment": sentiment.catalog, "probe": probe.probe_items}
MODULES = {"support": support, "sentiment": sentiment, "probe": probe}

# sha256 of json.dumps(rows, sort_keys=True) for every split, taken from the code *before* the catalogues moved
# out of Python (support_catalog.py and the tuples in sentiment.py and probe.py): the move kept every row byte for
# byte. A change here changes what every recipe trains and evaluates on; update a figure only on purpose.
# Changed on purpose since: the support splits hold out three products per scenario (141 test pairs, was 94);
# arithmetic-carry added (the carry as its own step); arithmetic-carried added (only the sums that carry).
SPLIT_SHA256 = {
    ("arithmetic", "train"): "9b588a4e8580e528c8397d06064d0aebd90b67f9fe1e861a0e3a3862a1b7c80b",
    ("arithmetic", "test"): "7d819127e3cde2b853cea6f165f98caf9be2034b128a0ec0df59c87ca3016b29",
    ("arithmetic-sft", "train"): "9df03e61210bd8c2376444a63cfe60c8551800d892a294ecc1c2f7a01a97be2d",
    ("arithmetic-sft", "test"): "4808f8fbdf025c43a3eda7274bcda4409155e41600e46430f25d5561fa7a28a3",
    ("arithmetic-short", "train"): "3afd7970a2e6c67a51c59ace0ca619ec18645f0c449df9f9db5f9532248f5115",
    ("arithmetic-short", "test"): "0450d2a29a33fd076e52e9e074d1e36ab910560513d8167000ca0de89d4becf2",
    ("arithmetic-carry", "train"): "5e31145366ef5a8f192b7bd611940d73a2b4ca86bc9b3456b3172c60fd2be206",
    ("arithmetic-carry", "test"): "6546f02346d79c8f080bec0f65ec359a62695b8843f2d24cc1b996bf8802a7a4",
    ("arithmetic-carried", "train"): "37ff1a6e831d7205acdea205093ed9ab4afc2990bf3e7bdd83d414067a8c1d13",
    ("arithmetic-carried", "test"): "78f20041a493a637e971a3a5ea619210119a6d82cdc13145b9118d3a3301755e",
    ("support-preference", "train"): "3adeaf5bd8ea70e3ce200ea45f812f62c5dbabe64b1b433b0e8802f6f80bd894",
    ("support-preference", "test"): "760763332e2e2082f364bda4ca1abff3352861502d3661812e9f4800789330ab",
    ("support-sft", "train"): "b9c149340bcd8046e187da6e710808ee0c16715489156dc2ea5c5d86a79f2ff6",
    ("support-sft", "test"): "28f956171e5d5ec52190ad71795934d085a7797468593015abaf4e05890afa99",
    ("general-probe", "test"): "871ae6b808227987efc16d7f9af74c47b1a9094eb0e361d54eedc06378158515",
    ("sentiment", "train"): "0f3b5ac2406853db7dfc3004a06e160adf570d52319c716ea1ee837e81d973b5",
    ("sentiment", "test"): "67366d2b9aba36c72b1664f0f242be67878b35941d528e555c1ba50fb79045b2",
}
# The probe items with their example answers (the tests of rewards.general check every example), as lists, same origin.
PROBE_ITEMS_SHA256 = "3afa22691c007a40154afb89c68fd746c56fd314d2a270c12c12165105e23a00"


def sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@pytest.fixture
def fresh_readers():
    """Readers with empty caches, emptied again afterwards so that no other test sees what this one read."""
    for read in READERS.values():
        read.cache_clear()
    yield READERS
    for read in READERS.values():
        read.cache_clear()


@pytest.mark.parametrize(("name", "split"), sorted(SPLIT_SHA256))
def test_every_bundled_split_is_byte_identical_to_before_the_move(name, split):
    assert sha256(bundled.DATASETS[name](split)) == SPLIT_SHA256[(name, split)]


def test_every_data_set_and_split_has_a_recorded_figure():
    # general-probe has no train split (it raises, see test_forgetting); every other pair is pinned above.
    assert set(SPLIT_SHA256) == {(n, s) for n in bundled.DATASETS for s in bundled.SPLITS} - {("general-probe", "train")}


def test_probe_items_and_their_examples_are_unchanged():
    items = probe.probe_items()
    assert hashlib.sha256(json.dumps([list(i) for i in items]).encode()).hexdigest() == PROBE_ITEMS_SHA256


@pytest.mark.parametrize(
    ("module", "old", "new", "read", "expected"),
    [
        (
            "support",
            "AeroBrew coffee maker",
            "AeroBrew coffee machine",
            lambda: support.catalog().products[0].name,
            "AeroBrew coffee machine",
        ),
        ("sentiment", "name: kettle,", "name: teapot,", lambda: sentiment.catalog().products[0][0], "teapot"),
        ("probe", '"example": "Paris"', '"example": "Paris, France"', lambda: probe.probe_items()[0].example, "Paris, France"),
    ],
)
def test_each_reader_reads_its_data_file_through_importlib_resources(
    fresh_readers, monkeypatch, tmp_path, module, old, new, read, expected
):
    data_file = files(PACKAGE).joinpath(MODULES[module].DATA_FILE)
    assert data_file.is_file()
    text = data_file.read_text(encoding="utf-8")
    assert text.count(old) == 1
    (tmp_path / data_file.name).write_text(text.replace(old, new), encoding="utf-8")
    asked = []

    def package_files(package: str):
        asked.append(package)
        return tmp_path

    # The reader asks importlib.resources for its package's folder, so a patched files() redirects it.
    monkeypatch.setattr(MODULES[module], "files", package_files)
    assert read() == expected and asked == [PACKAGE]
    assert read() == expected and asked == [PACKAGE]  # read once, then cached


def test_package_data_ships_every_data_file():
    tomllib = pytest.importorskip("tomllib")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][PACKAGE]
    data = {p.name for p in files(PACKAGE).iterdir() if p.is_file() and not p.name.endswith((".py", ".pyc"))}
    assert data == {m.DATA_FILE for m in MODULES.values()}  # every data file is read by its module, none is stray
    assert all(any(fnmatch(name, g) for g in globs) for name in data)


def _data_strings() -> set[str]:
    """Every string value (not key) of the data files."""
    found: set[str] = set()

    def walk(value):
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for module in MODULES.values():
        text = files(PACKAGE).joinpath(module.DATA_FILE).read_text(encoding="utf-8")
        walk([json.loads(line) for line in text.splitlines()] if module.DATA_FILE.endswith(".jsonl") else yaml.safe_load(text))
    return found


def _module_trees() -> dict[str, ast.Module]:
    folder = ROOT / "rlft" / "data" / "bundled"
    return {p.name: ast.parse(p.read_text()) for p in sorted(folder.glob("*.py"))}


def test_no_catalogue_is_left_in_python():
    assert importlib.util.find_spec("rlft.data.bundled.support_catalog") is None
    for name, tree in _module_trees().items():
        # A module-level constant holding more than ten strings is a catalogue: it belongs in a data file.
        # (arithmetic.py keeps its three short word lists, the templates that rlft.data.augment mirrors.)
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                if isinstance(node.value, ast.Dict) and not any(isinstance(v, ast.Constant) for v in node.value.values):
                    continue  # a registry of readers by name (DATASETS: name -> function), not text
                strings = [n for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                assert len(strings) <= 10, f"{name}:{node.lineno} defines a catalogue of {len(strings)} strings in Python"


def test_no_data_file_text_is_also_written_in_python():
    long_texts = {s for s in _data_strings() if len(s) >= 20}
    assert len(long_texts) > 500  # the catalogues really are in the data files
    for name, tree in _module_trees().items():
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None
        }
        literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]
        assert not [s for s in long_texts if any(s in lit for lit in literals)], f"{name} repeats data-file text in Python"
