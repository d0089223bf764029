"""The package reads as the pipeline: its imports point one way, and docs/layout.md names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# docs/layout.md, top to bottom: a part may import only the parts below it
ORDER = ["cli", "model_card", "export", "evaluate", "runtime", "train", "data", "model", "process", "params"]
SIBLINGS = {frozenset({"export", "evaluate"})}  # side by side: neither imports the other


def part_of(module: str) -> str | None:
    """'facedet.data.wider_gt' -> 'data'; 'facedet.model_card' -> 'model_card'; 'facedet' -> None."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "facedet" else None


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "facedet":
            found |= {f"facedet.{a.name}" for a in node.names} if node.module == "facedet" else {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "facedet"}
    return found


def package_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in (REPO / "facedet").rglob("*.py")}


def test_imports_point_down_the_pipeline_only():
    upward = []
    for name, path in package_modules().items():
        mine = part_of(name)
        for imported in imports_of(path):
            theirs = part_of(imported)
            if mine in ORDER and theirs in ORDER and theirs != mine:
                if ORDER.index(theirs) < ORDER.index(mine) or frozenset({mine, theirs}) in SIBLINGS:
                    upward.append(f"{name} imports {imported}")
    assert not upward, upward
    assert {part_of(name) for name in package_modules()} - {None, "__init__"} == set(ORDER)


def test_the_layout_page_names_every_module():
    layout = (REPO / "docs/layout.md").read_text()
    tree = layout.split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    part = None
    for line in tree.splitlines():
        if match := re.match(r"  (\w+)/\s", line):
            part = match.group(1)
        elif re.match(r"  \w+\.py\s", line) or not line.startswith("   "):
            part = None
        if part:
            body = line.split("/", 1)[1] if re.match(r"  \w+/", line) else line
            names = re.sub(r"\([^)]*\)", "", body)
            listed.setdefault(part, set()).update(re.findall(r"\b[a-z_]+\b", names))
    for name in package_modules():
        bits = name.split(".")
        if len(bits) == 3 and bits[2] not in ("__init__", "__main__"):
            assert bits[2] in listed.get(bits[1], set()), f"docs/layout.md does not name facedet/{bits[1]}/{bits[2]}.py"
        elif len(bits) == 2 and bits[1] != "__init__":
            assert f"{bits[1]}.py" in tree, f"docs/layout.md does not name facedet/{bits[1]}.py"
