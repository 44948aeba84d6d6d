"""The docs cannot drift from the code: README.md and docs/*.md are checked against the real recipe checks and CLI.

What a docs writer follows (each rule is one test below):

- A fenced ``yaml`` block whose top level has ``stages:`` is a whole recipe (``name:`` and ``model:`` may be left
  out: the test fills in a name and the bundled model); a block whose top level is a list of stages (each with
  ``kind:``) is wrapped into such a recipe. Both are validated by ``rlft plan`` itself, in a folder that holds
  ``docs/examples/`` so that the files a snippet names (``./my_rewards.py``, ``./extra.jsonl``) are there.
- Any other ``yaml`` block (one key of a stage, a ``data:`` mapping) is a fragment: the line before it says
  ``<!-- fragment -->`` (words may follow ``fragment``), and it must still parse as YAML.
- Every ``rlft ...`` line of a ``bash``/``sh``/``shell`` block (``$ rlft ...`` in a ``console`` block) is parsed by
  the real ``rlft`` parser without running it; a recipe under ``recipes/`` that it names must exist and take its
  overrides. Every ``--flag`` of an inline ``rlft ...`` code span must be an option of that command.
- Every relative link points to a file that exists (and, with ``#anchor``, to a heading of it); every
  ``recipes/``, ``scripts/``, ``rlft/``, ``rewards/``, ``tests/`` or ``docs/`` path the docs name exists.
- README.md stays a landing page: under 8,000 characters, its recipe is ``recipes/quickstart.yaml``, its two
  commands are Makefile targets, and every ``rlft`` command is listed in docs/commands.md.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from rlft.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
FRAGMENT = re.compile(r"<!--\s*fragment\b[^>]*-->\s*$")
SHELL = {"bash", "sh", "shell", "console"}


def _blocks(page: Path):
    """(language, body, first line number of the block, the text just before the fence) for every fenced block."""
    text = page.read_text()
    for m in FENCE.finditer(text):
        yield m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1, text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]


def _where(page: Path, line: int) -> str:
    return f"{page.relative_to(ROOT)}:{line}"


def _prose(page: Path) -> str:
    """The page without its fenced blocks (blanked, so line numbers hold)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text())


def _recipe_snippets():
    found = []
    for page in PAGES:
        for lang, body, line, before in _blocks(page):
            if lang not in ("yaml", "yml"):
                continue
            data = yaml.safe_load(body)
            if FRAGMENT.search(before):
                continue
            if isinstance(data, list) and data and all(isinstance(s, dict) and "kind" in s for s in data):
                data = {"stages": data}
            if isinstance(data, dict) and "stages" in data:
                found.append(pytest.param(data, id=_where(page, line)))
    return found


RECIPE_SNIPPETS = _recipe_snippets()


def test_there_are_recipe_snippets_to_check():
    assert len(RECIPE_SNIPPETS) >= 10


@pytest.mark.parametrize("snippet", RECIPE_SNIPPETS)
def test_recipe_snippet_passes_rlft_plan(snippet, tmp_path, monkeypatch):
    recipe = {"name": "doc", "model": "bundled:smollm2-135m-instruct", **snippet}
    shutil.copytree(ROOT / "docs" / "examples", tmp_path, dirs_exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 0 and "recipe is valid" in result.output, result.output


def test_every_yaml_block_is_a_recipe_or_marked_as_a_fragment():
    unmarked = []
    for page in PAGES:
        for lang, body, line, before in _blocks(page):
            if lang not in ("yaml", "yml"):
                continue
            data = yaml.safe_load(body)  # a fragment must still be YAML
            is_stages = isinstance(data, list) and data and all(isinstance(s, dict) and "kind" in s for s in data)
            if not (isinstance(data, dict) and "stages" in data) and not is_stages and not FRAGMENT.search(before):
                unmarked.append(f"{_where(page, line)}: not a recipe nor a list of stages; put <!-- fragment --> on the line before it")
    assert not unmarked, "\n".join(unmarked)


def test_the_fragment_marker_exempts_only_the_block_after_it():
    page = "text\n<!-- fragment: part of a stage -->\n```yaml\nguards: {kl_max: 0.5}\n```\n\n```yaml\nx: 1\n```\n"
    blocks = [
        (before, body) for body, before in ((m.group(2), page[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]) for m in FENCE.finditer(page))
    ]
    assert [bool(FRAGMENT.search(before)) for before, _ in blocks] == [True, False]


# --- rlft command lines --------------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"<[A-Za-z][^<>\n]*>")
CUT = {"|", "||", "&&", ";", "&"}


def _command_lines():
    """(where, argv after `rlft`) for every rlft command of a shell block."""
    found = []
    for page in PAGES:
        for lang, body, line, _ in _blocks(page):
            if lang not in SHELL:
                continue
            body = body.replace("\\\n", " ")
            for offset, raw in enumerate(body.splitlines()):
                if lang == "console":
                    if not raw.startswith("$ "):
                        continue
                    raw = raw[2:]
                for argv in _rlft_argvs(PLACEHOLDER.sub("PLACEHOLDER", raw)):
                    found.append(pytest.param(argv, id=f"{_where(page, line + 1 + offset)} rlft {' '.join(argv)[:60]}"))
    return found


def _rlft_argvs(line: str) -> list[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens, segments = list(lexer), [[]]
    for tok in tokens:
        if tok in CUT:
            segments.append([])
        else:
            segments[-1].append(tok)
    argvs = []
    for seg in segments:
        while seg and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", seg[0]):  # VAR=value before the command
            seg = seg[1:]
        if not seg or seg[0] != "rlft":
            continue
        seg = seg[1:]
        redirect = next((i for i, t in enumerate(seg) if t[0] in "<>"), len(seg))
        argvs.append(seg[:redirect])
    return argvs


def _parse(argv: list[str]):
    """Resolve the subcommand and parse its arguments with the real parser, without running it: (path, params)."""
    cmd, path, args = typer.main.get_command(app), [], list(argv)
    while hasattr(cmd, "get_command"):
        assert args, f"rlft {' '.join(path)}: no subcommand given"
        sub = cmd.get_command(None, args[0])
        assert sub is not None, f"rlft {' '.join([*path, args[0]])}: no such command; commands: {', '.join(cmd.list_commands(None))}"
        cmd, path, args = sub, [*path, args[0]], args[1:]
    try:
        ctx = cmd.make_context(" ".join(["rlft", *path]), args)
    except Exception as exc:  # the parser's UsageError: an unknown option, a missing argument, a bad value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise AssertionError(f"rlft {' '.join(argv)}: {message}") from None
    return path, ctx.params


COMMANDS = _command_lines()


def test_there_are_commands_to_check():
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("argv", COMMANDS)
def test_command_line_parses_and_its_recipe_takes_the_overrides(argv):
    from rlft.recipe import load_recipe

    path, params = _parse(argv)
    recipe = params.get("recipe")
    if recipe is None:
        return
    file = ROOT / recipe
    if str(recipe).startswith("recipes/"):
        assert file.is_file(), f"rlft {' '.join(argv)}: {recipe} does not exist"
    if file.is_file():
        load_recipe(file, list(params.get("overrides") or []))  # the overrides name keys the recipe has


def test_the_parser_check_catches_an_unknown_option_a_missing_argument_and_an_unknown_command():
    assert _parse(["compare", "a", "b", "--plot", "p"])[0] == ["compare"]
    assert _rlft_argvs("COLUMNS=80 rlft compare a b > t.txt 2>&1   # a comment") == [["compare", "a", "b"]]
    assert _rlft_argvs("echo hi | rlft chat run1") == [["chat", "run1"]]
    for argv, says in (
        (["compare", "a", "--nope"], "No such option: --nope"),
        (["push"], "Missing argument"),
        (["rewards", "tst"], "no such command"),
    ):
        with pytest.raises(AssertionError, match=says):
            _parse(argv)


INLINE = re.compile(r"`(rlft [^`\n]+)`")


def _options(cmd) -> set[str]:
    return {"--help", *(opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts))}


def test_every_flag_of_an_inline_rlft_command_exists():
    group, bad = typer.main.get_command(app), []
    for page in PAGES:
        for m in INLINE.finditer(_prose(page)):
            words, cmd, path = m.group(1).split()[1:], group, []
            while hasattr(cmd, "get_command") and words and cmd.get_command(None, words[0]) is not None:
                cmd, path, words = cmd.get_command(None, words[0]), [*path, words[0]], words[1:]
            if hasattr(cmd, "get_command") and not all(w.startswith("-") or w.isupper() for w in words):
                bad.append(f"{page.relative_to(ROOT)}: `{m.group(1)}` names no rlft command")
                continue
            flags = {f.split("=")[0] for w in words for f in re.findall(r"--[\w-]+(?:=\S*)?", w)}
            bad += [f"{page.relative_to(ROOT)}: `{m.group(1)}`: rlft {' '.join(path)} has no {f}" for f in sorted(flags - _options(cmd))]
    assert not bad, "\n".join(bad)


def test_every_rlft_command_is_listed_in_the_commands_page():
    page = (ROOT / "docs" / "commands.md").read_text()

    def names(cmd, prefix):
        for name, sub in sorted(cmd.commands.items()):
            yield from names(sub, [*prefix, name]) if hasattr(sub, "commands") else [" ".join([*prefix, name])]

    missing = [n for n in names(typer.main.get_command(app), ["rlft"]) if f"`{n}" not in page]
    assert missing == []


# --- links, paths, the README ----------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _prose(page), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def test_github_anchors():
    page = ROOT / "docs" / "recipes_and_stages.md"
    assert "self-improvement-in-rounds-expert_iteration-iterative_dpo-online_dpo" in _anchors(page)
    assert "ppo-kind-ppo" in _anchors(page)


def test_every_relative_link_points_to_a_file_and_heading_that_exist():
    broken = []
    for page in PAGES:
        for target in LINK.findall(re.sub(r"`[^`\n]*`", "", _prose(page))):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target}: no heading #{anchor} in {dest.name}")
    assert not broken, "\n".join(broken)


REPO_PATH = re.compile(r"(?<![\w./<-])((?:recipes|scripts|rlft|rewards|tests|docs)/[\w./-]*)")


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for page in PAGES:
        for path in REPO_PATH.findall(page.read_text()):
            path = path.rstrip(".")  # a sentence's full stop
            if not (path.endswith("/") or re.search(r"\.\w+$", path)):  # prose like rlft/TRL/transformers names no path
                continue
            if not (ROOT / path).exists() and not (page.parent / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, "\n".join(missing)


def test_readme_is_a_landing_page_under_8000_characters():
    assert len((ROOT / "README.md").read_text()) < 8000


def test_readme_recipe_is_the_quickstart_recipe():
    blocks = [body for lang, body, _, _ in _blocks(ROOT / "README.md") if lang == "yaml"]
    assert [yaml.safe_load(b) for b in blocks] == [yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())]


def test_readme_two_commands_are_the_makefile_targets_ci_runs():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = {t for page in PAGES for lang, body, _, _ in _blocks(page) if lang in SHELL for t in re.findall(r"^make ([\w-]+)", body, re.M)}
    assert {"demo", "test"} <= named <= targets
    demo = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "rlft run recipes/quickstart.yaml" in demo
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)
