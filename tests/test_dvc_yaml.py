"""dvc.yaml declares exactly what each stage reads, so `dvc repro` re-runs what changed and only that."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def facedet_imports(path: Path) -> set[Path]:
    """facedet modules imported by one source file (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "facedet":
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "facedet" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "facedet"]
        else:
            continue
        found |= {REPO / (name.replace(".", "/") + ".py") for name in names}
    return {p for p in found if p.is_file()}


def import_closure(path: Path) -> set[str]:
    seen: set[Path] = set()
    todo = [path]
    while todo:
        for module in facedet_imports(todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return {str(p.relative_to(REPO)) for p in seen}


def stages() -> dict:
    """Each stage's definition (a `foreach` stage's `do` template)."""
    return {name: stage.get("do", stage) for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()}


def test_each_stage_depends_on_exactly_the_code_it_runs():
    for name, stage in stages().items():
        module = f"stages/{name}.py"
        assert stage["cmd"] in (f"python -m stages.{name}", f"python -m stages.{name} ${{key}}")
        code_deps = {d for d in stage["deps"] if d.startswith("facedet/")}
        assert module in stage["deps"], name
        assert code_deps == import_closure(REPO / module), name


def test_the_model_card_does_not_rerun_when_the_data_code_changes():
    """The card hashes files with facedet.pipeline.hashing, not the download code: editing the HTTP
    retry loop or the synthetic scenes re-runs fetch, never the card (nor re-times its latency)."""
    card = {d for d in stages()["model_card"]["deps"] if d.startswith("facedet/")}
    assert "facedet/pipeline/hashing.py" in card
    assert not {d for d in card if d.startswith("facedet/data/")}, card


def test_each_stage_reads_only_its_own_params_section():
    sections = {name: stage.get("params", []) for name, stage in stages().items()}
    card = sections.pop("model_card")  # the card records every param, so it reads them all
    assert sections["fetch"] == ["data"]
    assert sections["extra_train"] == ["data.extra_train.${key}"]
    assert sections["filter"] == ["filter"]
    assert sections["shard"] == ["shard"]
    assert sections["train"] == ["model", "train"]
    assert sections["export"] == ["export"]
    assert all(p.startswith("evaluate") for p in sections["evaluate"] + sections["evaluate_tflite"])
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    declared = {p.split(".")[0] for ps in sections.values() for p in ps}
    assert declared == set(params), "every params.yaml section is read by some stage, and only those"
    assert set(card) == set(params)


def test_every_stage_has_help():
    for name in stages():
        source = (REPO / f"stages/{name}.py").read_text()
        assert "argparse" in source and "__doc__" in source, name
