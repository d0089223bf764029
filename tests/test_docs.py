"""Every command in the README and docs/ runs as written: a newcomer copies them. Each fenced shell
block's commands are checked as far as they can be without running the pipeline: `facedet` and stage
commands parse with their own parsers (and their `--help` runs), `dvc` commands parse with DVC's,
every `-S key=value` names a key of params.yaml and changes its value, benchmark scripts exist and
take the flags shown; Python blocks' imports resolve. The README is short, and `.ci/run` runs its
install and test commands exactly."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = ("bash", "sh", "shell", "console")
SEPARATORS = ("&&", "||", ";", "|")
NOT_CHECKED = {"git", "pip", "cd", "xdg-open", "tensorboard", "gto", "ls", "cat"}  # other tools' commands


def fenced_blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, text, first line number) of each fenced block of a Markdown page."""
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if match := re.match(r"\s*```(\w*)\s*$", lines[i]):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            blocks.append((match.group(1), "\n".join(lines[i + 1:end]), i + 2))
            i = end
        i += 1
    return blocks


def shell_commands(page: Path) -> list[tuple[str, list[str]]]:
    """('page:line', argv) of every command of the page's shell blocks: continuation lines joined,
    comments dropped, split at && ; | , leading VAR=value assignments left out."""
    found = []
    for language, text, first in fenced_blocks(page):
        if language not in SHELL:
            continue
        logical, start = "", first
        for number, line in enumerate(text.splitlines(), start=first):
            logical, start = (logical + " " + line.rstrip("\\"), start) if logical else (line.rstrip("\\"), number)
            if line.endswith("\\"):
                continue
            tokens = shlex.split(logical, comments=True)
            logical = ""
            command: list[str] = []
            for token in [*tokens, ";"]:
                if token in SEPARATORS:
                    while command and re.match(r"^[A-Z_]+=", command[0]):
                        command.pop(0)
                    if command:
                        found.append((f"{page.relative_to(REPO)}:{start}", command))
                    command = []
                else:
                    command.append(token)
    return found


def all_commands() -> list[tuple[str, list[str]]]:
    return [c for page in PAGES for c in shell_commands(page)]


def params_value(params: dict, key: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def check_set_params(where: str, argv: list[str]) -> None:
    """Each `-S key=value` of a `dvc exp run` names a params.yaml key (a new `+key`: its parent)
    and sets another value than params.yaml's (a command that sets the default is a mistake)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for flag, setting in zip(argv, argv[1:]):
        if flag not in ("-S", "--set-param"):
            continue
        key, _, value = setting.partition("=")
        if key.startswith("+"):
            parent = key[1:].rsplit(".", 1)[0]
            assert isinstance(params_value(params, parent), dict), (where, setting)
            continue
        try:
            current = params_value(params, key.lstrip("~"))
        except KeyError:
            pytest.fail(f"{where}: -S {setting}: params.yaml has no key {key!r}")
        assert yaml.safe_load(value) != current, f"{where}: -S {setting} sets params.yaml's own value"


def check_python(where: str, argv: list[str]) -> None:
    if argv[1] == "-m":
        module, rest = argv[2], argv[3:]
        if module == "pytest":
            return
        if module.startswith("stages."):
            parser = importlib.import_module(module).PARSER
            parser.parse_args(rest)
            return
        if module == "facedet.cli":
            check_facedet(where, ["facedet", *rest])
            return
        pytest.fail(f"{where}: python -m {module}: not a command of this project")
    script = REPO / argv[1]
    assert script.is_file(), f"{where}: {argv[1]} does not exist"
    source = script.read_text()
    for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert f'"{flag}"' in source, f"{where}: {argv[1]} takes no {flag}"


def check_facedet(where: str, argv: list[str]) -> None:
    from facedet.cli import build_parser

    build_parser().parse_args(argv[1:])  # argparse exits (status 2) on an unknown flag or a missing argument
    with pytest.raises(SystemExit) as shown, contextlib.redirect_stdout(io.StringIO()) as out:
        build_parser().parse_args([argv[1], "--help"])
    assert shown.value.code == 0 and out.getvalue().startswith("usage: facedet"), where


def check_dvc(where: str, argv: list[str]) -> None:
    from dvc.cli import DvcParserError, parse_args

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parse_args(argv[1:])
    except (DvcParserError, SystemExit):
        pytest.fail(f"{where}: DVC does not accept `{shlex.join(argv)}`")
    if argv[1:3] == ["exp", "run"]:
        check_set_params(where, argv)


def test_the_docs_have_commands_to_check():
    commands = all_commands()
    tools = {argv[0] for _, argv in commands}
    assert {"facedet", "dvc", "python"} <= tools, tools
    assert len(commands) > 40


@pytest.mark.parametrize("where, argv", all_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_each_documented_command_runs_as_written(where, argv):
    tool = Path(argv[0]).name
    if tool in NOT_CHECKED or argv[0] in (".", "source"):  # other tools; `. .venv/bin/activate`
        return
    if tool == "facedet":
        check_facedet(where, argv)
    elif tool == "dvc":
        check_dvc(where, argv)
    elif tool in ("python", "python3"):
        if argv[1:3] == ["-m", "venv"]:
            return
        check_python(where, argv)
    else:
        pytest.fail(f"{where}: `{tool}` is neither a command of this project nor one the docs may use")


def test_python_blocks_import_what_exists():
    for page in PAGES:
        for language, text, first in fenced_blocks(page):
            if language != "python":
                continue
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        if not hasattr(module, alias.name):  # a submodule: `from PIL import Image`
                            importlib.import_module(f"{node.module}.{alias.name}")
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        importlib.import_module(alias.name)


def test_the_readme_is_a_short_front_door_and_ci_runs_its_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    head = readme.split("\n## ", 1)[0]
    assert "facedet detect photo.jpg --out detections/" in head  # what the tool does, first
    assert "smoke test" in readme and "synthetic" in readme and "says nothing about real photos" in readme
    assert "## A model that finds real faces" in readme and "dvc exp diff" in readme
    blocks = [text for language, text, _ in fenced_blocks(REPO / "README.md") if language in SHELL]
    install = next(b for b in blocks if b.startswith("python3 -m venv .venv"))
    assert install.endswith(" && dvc repro")
    test_command = next(b for b in blocks if "-m pytest" in b)
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert install.removesuffix(" && dvc repro") in ci and test_command in ci
    for page in re.findall(r"\]\((docs/[\w-]+\.md)\)", readme):
        assert (REPO / page).is_file(), page
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"the README does not link {page.name}"


def test_the_docs_name_only_files_the_repository_has():
    """A path to code in the docs (`facedet/...py`, `stages/...`, `bench/...`, `tests/...`) exists, and no
    page sends the reader to a design note outside the repository (the old `DESIGN.md` sections)."""
    for page in PAGES:
        text = page.read_text()
        assert "DESIGN.md" not in text, page.name
        for path in re.findall(r"`((?:facedet|stages|bench|tests)/[\w/]+\.py)", text):
            assert (REPO / path).is_file(), f"{page.name}: {path} does not exist"
