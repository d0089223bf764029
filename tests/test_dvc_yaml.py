"""dvc.yaml declares exactly what each stage reads, so `dvc repro` re-runs what changed and only that."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGE_PYTHON = "sh stages/python"  # every stage runs with the interpreter that runs DVC


def facedet_imports(path: Path) -> set[Path]:
    """facedet modules imported by one source file (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "facedet":
            # `from facedet.x import y`: module x, or module x.y of package x (whichever is a file)
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
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
        assert stage["cmd"] in (f"{STAGE_PYTHON} -m stages.{name}", f"{STAGE_PYTHON} -m stages.{name} ${{key}}")
        code_deps = {d for d in stage["deps"] if d.startswith("facedet/")}
        assert module in stage["deps"], name
        assert code_deps == import_closure(REPO / module), name


def test_the_model_card_does_not_rerun_when_the_data_code_changes():
    """The card hashes files with facedet.process.hashing, not the download code: editing the HTTP
    retry loop or the synthetic scenes re-runs fetch, never the card (nor re-times its latency)."""
    card = {d for d in stages()["model_card"]["deps"] if d.startswith("facedet/")}
    assert "facedet/process/hashing.py" in card
    assert not {d for d in card if d.startswith("facedet/data/")}, card


def test_training_does_not_rerun_when_the_wider_parsers_change():
    """Train reads the TFRecord format (facedet.data.tfrecord_schema), never the WIDER files nor the code
    that writes the shards: an edit to the gt txt parser, the .mat reader, the archives or the image
    encoder re-runs fetch to shard (each with the same data md5s), not a 45-minute training."""
    train = {d for d in stages()["train"]["deps"] if d.startswith("facedet/data/")}
    assert train == {"facedet/data/tfrecord_schema.py"}, train


def test_each_stage_reads_only_its_own_params_section():
    sections = {name: stage.get("params", []) for name, stage in stages().items()}
    card = sections.pop("model_card")  # the card records every param, so it reads them all
    deciders = ["data.source", "data.extra_train"]  # the data choosing the `auto` knobs' values (next test)
    assert sections["fetch"] == ["data"]
    assert sections["extra_train"] == ["data.extra_train.${key}"]
    assert sections["filter"] == ["filter", *deciders]
    assert sections["shard"] == ["shard"]
    assert sections["train"] == ["model", "train", *deciders]
    assert sections["evaluate"] == ["evaluate", *deciders]
    assert sections["export"] == ["export", *deciders]
    assert all(p.startswith("evaluate") for p in sections["evaluate_tflite"])
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    declared = {p.split(".")[0] for ps in sections.values() for p in ps}
    assert declared == set(params), "every params.yaml section is read by some stage, and only those"
    assert set(card) == set(params)


def test_a_stage_reading_an_auto_knob_lists_the_params_that_choose_its_value():
    """An `auto` knob takes its value from the data (facedet.params.recipes): pointing the pipeline at real
    photos (`-S data.source=local`) re-runs every stage that reads one, and `dvc params diff` says why."""
    from facedet.params.recipes import DECIDED_BY, REAL_PHOTOS, SYNTHETIC

    def covers(listed: list[str], key: str) -> bool:  # DVC re-runs the stage when `key` changes
        return any(key == p or key.startswith(f"{p}.") for p in listed)

    assert set(SYNTHETIC.values) == set(REAL_PHOTOS.values)
    readers = []
    for name, stage in stages().items():
        listed = stage.get("params", [])
        if any(covers(listed, knob) for knob in SYNTHETIC.values):
            readers.append(name)
            assert all(covers(listed, key) for key in DECIDED_BY), name
    assert readers == ["filter", "train", "evaluate", "export", "model_card"]
    # `model.preset: auto` names no file DVC can interpolate: the stages reading the preset track configs/
    assert "configs" in stages()["train"]["deps"] and "configs" in stages()["model_card"]["deps"]


def stage_args(name: str) -> dict[str, object]:
    """A stage's arguments as its `main()` parses them with no flags: {dest: default}."""
    module = importlib.import_module(f"stages.{name}")
    return vars(module.PARSER.parse_args(["NAME"] if name == "extra_train" else []))


def test_every_stage_has_help_naming_its_purpose_and_flags():
    """`python -m stages.<name> --help` prints the stage's docstring and every flag with its default."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = {name: subprocess.Popen([sys.executable, "-m", f"stages.{name}", "--help"], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in stages()}
    for name, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0 and err == "", (name, err)
        assert out.startswith(f"usage: python -m stages.{name} "), (name, out)
        doc = importlib.import_module(f"stages.{name}").__doc__
        assert doc.strip().splitlines()[0] in out, (name, out)
        for dest, default in stage_args(name).items():
            if dest == "name":  # extra_train's positional source name
                assert "the source's key under data.extra_train" in out
                continue
            assert f"--{dest.replace('_', '-')}" in out and f"default: {default}" in out, (name, dest, out)


def dvc_paths(stage: dict) -> set[str]:
    """The data paths dvc.yaml lists for a stage (deps, outs, metrics, plots), code and params-set paths left out."""
    listed = [*stage.get("deps", []), *stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    paths = {next(iter(p)) if isinstance(p, dict) else p for p in listed}
    return {p for p in paths if not p.startswith(("stages/", "facedet/", "${"))}


def test_stage_path_flags_default_to_the_paths_dvc_yaml_lists():
    """dvc.yaml spells out the paths of facedet.process.paths: each path DVC tracks for a stage lies
    under one of the stage's path flags' defaults, and each default is a path DVC tracks for it."""
    from facedet.model_card.lineage import DATA_OUTS
    from facedet.params.loader import PARAMS_FILE
    from facedet.process.paths import CHECKPOINT_DIR, DOWNLOAD_DIR, WIDERFACE_LOCK

    untracked_ok = {CHECKPOINT_DIR, DOWNLOAD_DIR, WIDERFACE_LOCK}  # resume state and the download cache: not DVC's
    for name, stage in stages().items():
        defaults = {p for p in stage_args(name).values() if isinstance(p, Path) and p != PARAMS_FILE}
        if name == "model_card":  # the card reads the data outputs' hashes from dvc.lock
            defaults |= {Path(p) for p in DATA_OUTS}
        tracked = dvc_paths(stage)
        uncovered = [p for p in tracked if not any(Path(p) == d or d in Path(p).parents for d in defaults)]
        assert uncovered == [], (name, "dvc.yaml paths no path flag of the stage defaults to")
        untracked = [d for d in defaults - untracked_ok
                     if not any(Path(p) == d or d in Path(p).parents for p in tracked)]
        assert untracked == [], (name, "path flags whose default dvc.yaml does not list for the stage")


def test_stages_run_with_the_python_that_runs_dvc_without_an_activated_venv(tmp_path):
    """`.venv/bin/dvc repro` from a shell where the venv is not activated: PATH finds no Python with
    our packages (a plain `python` in a stage command failed with "No module named 'tqdm'"), yet
    the stage runs with DVC's own interpreter."""
    dvc = Path(sys.executable).parent / "dvc"
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/python").write_bytes((REPO / "stages/python").read_bytes())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"which": {
        "cmd": f"{STAGE_PYTHON} -c \"import sys, tqdm; open('which.txt', 'w').write(sys.executable)\"",
        "outs": [{"which.txt": {"cache": False}}]}}}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    run = subprocess.run([dvc, "repro"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert Path((tmp_path / "which.txt").read_text()).parent == Path(sys.executable).parent  # the venv's bin/


HEADLINE_KEYS = ["easy_ap", "medium_ap", "hard_ap", "coco_ap", "size_kb", "latency_ms"]


def test_dvc_metrics_are_the_few_numbers_a_user_compares_and_fit_in_120_columns():
    """`dvc metrics show` / `dvc exp show` lead with the shipped file's Easy / Medium / Hard AP, COCO
    AP, size and latency; the counters (filter drops, every COCO figure, losses) are plain outputs."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    metrics = [next(iter(m)) if isinstance(m, dict) else m
               for stage in dvc_yaml["stages"].values() for m in stage.get("do", stage).get("metrics", [])]
    assert metrics == ["reports/metrics.json"]
    committed = json.loads((REPO / "reports/metrics.json").read_text())
    assert list(committed) == HEADLINE_KEYS and all(isinstance(v, float) for v in committed.values())
    dvc = Path(sys.executable).parent / "dvc"
    shown = subprocess.run([dvc, "metrics", "show"], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, COLUMNS="400"))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.rstrip().splitlines()
    assert len(lines) == 2 and lines[0].split() == ["Path", *sorted(HEADLINE_KEYS)], shown.stdout
    assert max(map(len, lines)) <= 120, shown.stdout


def test_every_chart_is_defined_once_with_real_axes():
    """No stage declares `plots:` (DVC would draw each such file again, against a row index); the
    top-level plots name x and y columns that the files hold: face sizes in pixels for train and val,
    recall against face height in pixels."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert not [name for name, stage in dvc_yaml["stages"].items() if "plots" in stage.get("do", stage)]
    plots = {next(iter(p)) if isinstance(p, dict) else p: (next(iter(p.values())) if isinstance(p, dict) else None)
             for p in dvc_yaml["plots"]}
    outs = {next(iter(o)) if isinstance(o, dict) else o
            for stage in dvc_yaml["stages"].values() for o in stage.get("do", stage).get("outs", [])}
    drawn = []
    for name, spec in plots.items():
        if spec is None:  # an image, shown as it is
            assert name.endswith(".png") and name in outs, name
            continue
        assert spec["title"] and spec["x"], name
        for path, fields in spec["y"].items():
            fields = [fields] if isinstance(fields, str) else fields
            drawn += [(path, field) for field in fields]
            if (REPO / path).is_file():  # DVC outputs: here after `dvc repro` or `dvc pull`
                sep = "\t" if path.endswith(".tsv") else ","
                header = (REPO / path).read_text().splitlines()[0].split(sep)
                assert spec["x"] in header and set(fields) <= set(header), (name, path, header)
    assert len(drawn) == len(set(drawn)), "a column drawn twice"
    assert plots["face_sizes"]["x"] == "min_side_px"
    assert plots["face_sizes"]["y"] == {"reports/filter/face_sizes.csv": ["train", "val"]}
    assert plots["recall_by_size"]["x"] == "min_height_px"
    assert set(plots["recall_by_size"]["y"]) == {"reports/evaluate/recall_by_size.csv",
                                                 "reports/evaluate_tflite/int8/recall_by_size.csv"}


# The stage that runs every time: it measures latency on the machine that runs it.
NOT_RUN_CACHED = {"model_card"}


def test_every_stage_but_the_model_card_can_be_restored_from_the_run_cache():
    """DVC 3.67 records a stage run in the run cache (and `dvc exp run` / `dvc repro` of a recipe run
    before restores it) only if none of its outputs is persist and each is in the DVC cache or a
    stage-level metric/plot; one plain `cache: false` output and the stage runs again. The slow
    tests/test_team_workflow.py checks the restore itself; this is the rule it rests on, in dvc.yaml."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    blocking = {}
    for name, stage in dvc_yaml["stages"].items():
        stage = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                path, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
                if options.get("persist") or (kind == "outs" and options.get("cache") is False):
                    blocking.setdefault(name, []).append(path)
    assert set(blocking) == NOT_RUN_CACHED, blocking


def test_the_face_detector_artifact_is_the_recommended_file_detect_uses():
    """`dvc artifacts get <repo> face-detector` gives the file `facedet detect` runs by default: the
    released real-face model, not this checkout's synthetic smoke-test export."""
    from facedet.cli.detect import RELEASED_MODEL

    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]
    assert Path(artifacts["face-detector"]["path"]) == RELEASED_MODEL.relative_to(REPO)
    assert artifacts["face-detector"]["meta"]["model_card"] == "models/release/model_card.md"
    assert artifacts["face-detector-run"]["path"] == "models/export/face_detector_int8.tflite"
