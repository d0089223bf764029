"""The model card: after the pipeline, a user opens models/model_card.md (or .json) and sees what the
model is, its input and outputs, its size and latency, every metric, and the commit, params and
DVC data hashes it came from; what is unknown (no dvc.lock, no git) is said, not guessed."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import yaml

from facedet.export.tflite import export_tflite
from facedet.model_card.card import build_model_card, load_inputs
from facedet.model_card.lineage import dvc_lock_hashes, git_lineage
from facedet.model_card.render import backbone_line, render_markdown
from facedet.params.sections import ExportParams
from stages.model_card import main as model_card_stage

from standin_detector import build_standin, face_image, standin_anchors

PARAMS = {"data": {"source": "synthetic", "synthetic": {"seed": 2026}}, "model": {"preset": "tiny_64"},
          "train": {"steps": 10}, "export": {"max_detections": 10, "use_regular_nms": False}}
DETECTOR = {"input_size": 64, "alpha": 0.35, "feature_strides": [8]}
BACKBONE = {"backbone_weights": "weights/mobilenet_v2_no_top.h5", "sha256": "c0ffee" * 10 + "beef"}
KERAS = {"wider_easy_ap": 0.91, "wider_medium_ap": 0.8, "wider_hard_ap": 0.5, "coco_ap": 0.4}
TFLITE = {"int8": {"wider_easy_ap": 0.9, "wider_medium_ap": 0.79, "wider_hard_ap": 0.48, "coco_ap": 0.39},
          "float": {"wider_easy_ap": 0.91, "wider_medium_ap": 0.8, "wider_hard_ap": 0.5, "coco_ap": 0.4},
          "int8_minus_float": {"wider_easy_ap": -0.01, "wider_medium_ap": -0.01, "wider_hard_ap": -0.02}}
LOCK = {"schema": "2.0", "stages": {
    "fetch": {"cmd": "python -m stages.fetch", "outs": [{"path": "data/raw", "hash": "md5", "md5": "aaa111.dir",
                                                           "size": 1234, "nfiles": 4}]},
    "shard": {"cmd": "python -m stages.shard", "outs": [{"path": "data/tfrecords", "hash": "md5",
                                                           "md5": "bbb222.dir", "size": 5678, "nfiles": 7}]}}}


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    rng = np.random.default_rng(0)
    images = [face_image(rng, 8, 8), face_image(rng, 30, 40)]
    return {q: export_tflite(build_standin(), standin_anchors(), images, out / f"face_detector_{q}.tflite",
                             ExportParams(max_detections=10), quantize=q) for q in ("int8", "float")}


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def project(tmp_path):
    """A tiny committed project: params.yaml, dvc.lock, a source file."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    (tmp_path / "train.py").write_text("print('train')\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def card_for(project, tflite_files, **overrides):
    kwargs = dict(params=PARAMS, detector_config=DETECTOR, preset_config={"input_size": 64}, backbone=BACKBONE,
                  tflite_files=tflite_files,
                  keras_metrics=KERAS, tflite_metrics=TFLITE, lock_path=project / "dvc.lock", repo=project,
                  latency_runs=3)
    return build_model_card(**(kwargs | overrides))


def test_the_card_traces_the_model_to_its_data_params_and_code(project, tflite_files):
    card = card_for(project, tflite_files)
    json.dumps(card)  # JSON-able as it is
    head = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert card["code"] == {"commit": head.strip(), "dirty": False, "dirty_paths": []}
    assert card["data"]["source"] == "synthetic"
    assert card["data"]["dvc"]["outs"] == {
        "data/raw": {"stage": "fetch", "md5": "aaa111.dir", "size": 1234, "nfiles": 4},
        "data/tfrecords": {"stage": "shard", "md5": "bbb222.dir", "size": 5678, "nfiles": 7}}
    assert card["params"] == PARAMS
    assert card["model"]["preset"] == "tiny_64" and card["model"]["detector_config"] == DETECTOR
    assert card["metrics"] == {"keras_float": KERAS, "tflite": TFLITE}
    assert card["backbone"] == BACKBONE
    assert f"- Backbone start: `weights/mobilenet_v2_no_top.h5`, sha256 `{BACKBONE['sha256']}`" in render_markdown(card)


def test_the_card_describes_each_shipped_file(project, tflite_files):
    card = card_for(project, tflite_files)
    for variant, path in tflite_files.items():
        facts = card["files"][variant]
        assert facts["size_kb"] == round(path.stat().st_size / 1024, 1) > 0
        assert facts["input"]["shape"] == [1, 64, 64, 3] and facts["input"]["dtype"] == "uint8"
        assert facts["outputs"]["detection_boxes"]["shape"] == [1, 10, 4]
        assert set(facts["outputs"]) == {"detection_boxes", "detection_classes", "detection_scores", "num_detections"}
        assert facts["latency_ms_1_thread"] > 0 and len(facts["sha256"]) == 64


def test_the_markdown_shows_metrics_lineage_and_params(project, tflite_files):
    card = card_for(project, tflite_files)
    text = render_markdown(card)
    assert text.startswith("# Model card: facedet face detector")
    assert "| wider_easy_ap | 0.9100 | 0.9100 | 0.9000 | -0.0100 |" in text
    assert card["code"]["commit"] in text and "aaa111.dir" in text and "bbb222.dir" in text
    assert "preset: tiny_64" in text  # params.yaml, as YAML
    for variant in ("int8", "float"):
        size_kb = card["files"][variant]["size_kb"]
        assert f"| {variant} | `{tflite_files[variant]}` | {size_kb} | uint8 1x64x64x3 stretch |" in text


def test_uncommitted_changes_and_missing_lineage_are_said(project, tflite_files, tmp_path_factory):
    (project / "train.py").write_text("print('changed')\n")
    (project / "dvc.lock").unlink()
    (project / "models").mkdir()
    (project / "models" / "model_card.md").write_text("the card being rewritten by this very stage\n")
    card = card_for(project, tflite_files, keras_metrics=None, tflite_metrics=None)
    # neither dvc.lock nor the card's own files are code
    assert card["code"]["dirty"] is True and card["code"]["dirty_paths"] == ["train.py"]
    assert card["data"]["dvc"]["found"] is False
    text = render_markdown(card)
    assert "uncommitted changes: train.py" in text and "dvc.lock not found" in text
    assert "No metrics yet" in text
    nowhere = tmp_path_factory.mktemp("no-git")
    assert git_lineage(nowhere)["commit"] is None
    assert dvc_lock_hashes(nowhere / "dvc.lock")["found"] is False


def test_the_stage_writes_models_model_card(project, tflite_files, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "models" / "detector").mkdir(parents=True)
    (project / "models" / "detector" / "detector.json").write_text(json.dumps(DETECTOR))
    (project / "reports" / "evaluate").mkdir(parents=True)
    (project / "reports" / "evaluate" / "metrics.json").write_text(json.dumps(KERAS))
    export_dir = tflite_files["int8"].parent
    (export_dir / "export.json").write_text(json.dumps({"models": [
        {"file": path.name, "variant": q, "quantize": q, "input_size": 64, "resize": "stretch",
         "trained_input_size": 64} for q, path in tflite_files.items()]}))
    model_card_stage(["--export-dir", str(export_dir), "--latency-runs", "2"])
    card = json.loads((project / "models" / "model_card.json").read_text())
    assert card["metrics"] == {"keras_float": KERAS, "tflite": None}  # evaluate_tflite not run here
    assert card["data"]["dvc"]["outs"]["data/raw"]["md5"] == "aaa111.dir"
    assert (project / "models" / "model_card.md").read_text().startswith("# Model card")
    assert "wrote models/model_card.md" in capsys.readouterr().out
    headline = json.loads((project / "reports" / "metrics.json").read_text())  # the one DVC metrics file
    assert list(headline) == ["easy_ap", "medium_ap", "hard_ap", "coco_ap", "size_kb", "latency_ms"]
    assert headline["easy_ap"] is None  # not scored here: said, not guessed
    assert headline["size_kb"] == card["files"]["int8"]["size_kb"] and headline["latency_ms"] > 0
    (export_dir / "export.json").unlink()
    with pytest.raises(SystemExit, match="run the export stage"):
        model_card_stage(["--export-dir", str(project / "nowhere")])


def test_the_card_says_which_file_was_scored_at_which_input(project, tflite_files):
    at_640 = {**TFLITE["int8"], "file": "face_detector_int8_640.tflite", "input_size": 640, "resize": "letterbox"}
    metrics = {**TFLITE, "int8_640": at_640, "float_640": {**at_640, "file": "face_detector_float_640.tflite"},
               "int8_minus_float_640": {"wider_easy_ap": 0.0}}
    text = render_markdown(card_for(project, tflite_files, tflite_metrics=metrics,
                                    keras_metrics={**KERAS, "input_size": 1024}))
    header = next(line for line in text.splitlines() if line.startswith("| metric |"))
    assert "Keras float at 1024" in header and "TFLite int8 (shipped) `face_detector_int8_640.tflite`" in header
    assert "int8 - float at 640" in header
    assert "| input_size | 1024 |" in text and "| 640 |" in text


def test_the_verdict_says_what_the_numbers_mean_for_the_data_they_were_scored_on(project, tflite_files):
    synthetic = card_for(project, tflite_files)
    text = render_markdown(synthetic)
    assert "synthetic smoke-test data" in synthetic["verdict"] and "nothing about real photos" in synthetic["verdict"]
    assert text.index("## Verdict") < text.index("## Files")  # read first
    assert "No real-photo figures: this run's val split is synthetic" in text
    assert "This model: testing the pipeline only (see the verdict)" in text
    real = {**PARAMS, "data": {"source": "local", "local": {"path": "/data/widerface"}}}
    hopeless = {**TFLITE, "int8": {**TFLITE["int8"], "wider_easy_ap": 0.0008, "wider_medium_ap": 0.0005,
                                   "wider_hard_ap": 0.0002, "file": "face_detector_int8.tflite", "input_size": 256}}
    card = card_for(project, tflite_files, params=real, tflite_metrics=hopeless)
    assert card["verdict"].startswith("Does not find real faces") and "0.001 / 0.001 / 0.000" in card["verdict"]
    good = {**TFLITE, "int8_640": {"wider_easy_ap": 0.671, "wider_medium_ap": 0.605, "wider_hard_ap": 0.423,
                                   "coco_ap": 0.3, "file": "face_detector_int8_640.tflite", "input_size": 640},
            "int8": {**TFLITE["int8"], "wider_medium_ap": 0.2}}
    card = card_for(project, tflite_files, params=real, tflite_metrics=good)
    # the verdict is the best shipped int8 file's, whichever export size it is
    assert card["verdict"].startswith("Finds most medium and large real faces")
    assert "`face_detector_int8_640.tflite` (the best int8 file): Easy / Medium / Hard AP 0.671" in card["verdict"]
    text = render_markdown(card)
    assert "| `face_detector_int8_640.tflite` | 640 | 0.6710 | 0.6050 | 0.4230 | 0.3000 |" in text  # real-photo figures
    assert "non-commercial research" in text  # a WIDER FACE copy carries its licence


def test_the_card_states_use_licence_and_the_threshold_detect_uses(project, tflite_files):
    from facedet.cli import build_parser

    card = card_for(project, tflite_files, params={**PARAMS, "data": {"source": "widerface"}})
    text = render_markdown(card)
    for heading in ("## Intended use", "## Out of scope", "## Recommended score threshold", "## Training data"):
        assert heading in text
    assert "who" in " ".join(card["out_of_scope"]) and "Commercial" in " ".join(card["out_of_scope"])
    assert "WIDER FACE is released for non-commercial research purposes only" in text
    detect_default = build_parser().parse_args(["detect", "x.jpg", "--out", "o"]).score_threshold
    assert card["recommended_score_threshold"] == detect_default
    assert f"Keep faces with score >= {detect_default} (`facedet detect`'s default" in text


def test_the_reproduce_line_carries_uncommitted_params_and_says_when_it_is_not_exact(project, tflite_files):
    head = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    clean = card_for(project, tflite_files)["reproduce"]
    assert clean == {"command": f"git checkout {head} && dvc repro", "exact": True,
                     "note": "the params are those the run used"}
    # `dvc exp run -S train.steps=20 -S export.input_sizes=[640,768]`: params.yaml differs from the commit
    used = {**PARAMS, "train": {"steps": 20}, "export": {**PARAMS["export"], "input_sizes": [640, 768]}}
    (project / "params.yaml").write_text(yaml.safe_dump(used))
    card = card_for(project, tflite_files, params=used)
    assert card["reproduce"]["command"] == (f"git checkout {head} && dvc exp run -S 'train.steps=20' "
                                            f"-S '+export.input_sizes=[640, 768]'")
    assert card["reproduce"]["exact"] is True
    assert f"`git checkout {head} && dvc exp run -S 'train.steps=20'" in render_markdown(card)
    (project / "train.py").write_text("print('changed')\n")
    card = card_for(project, tflite_files, params=used)
    assert card["reproduce"]["exact"] is False and "uncommitted changes to train.py" in card["reproduce"]["note"]
    assert "- Reproduce (not exact): " in render_markdown(card)


def test_the_card_shows_the_values_auto_took_and_reproduces_with_the_data_source_alone(project, tflite_files):
    """`dvc exp run -S data.source=local ...` on a params.yaml of `auto` knobs: the card's params are the
    values the run used (the real-photo recipe), it says which recipe and why, and its reproduce line
    sets what the user set, not the values the recipe derived from it."""
    auto = {**PARAMS, "data": {"source": "synthetic"}, "model": {"preset": "auto"},
            "train": {"steps": 10, "learning_rate": "auto"}}
    (project / "params.yaml").write_text(yaml.safe_dump(auto))
    git(project, "commit", "-qam", "auto knobs")
    head = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    used = {**auto, "data": {"source": "local", "local": {"path": "/data/widerface"}}}
    card = card_for(project, tflite_files, params=used)
    assert card["params"]["model"] == {"preset": "ssd_mobilenet_v2_native_256"} and card["model"]["preset"] == \
        "ssd_mobilenet_v2_native_256"
    assert card["params"]["train"] == {"steps": 10, "learning_rate": 0.008}
    assert card["recipe"] == {"name": "real photos", "why": "data.source=local",
                              "auto": {"model.preset": "ssd_mobilenet_v2_native_256", "train.learning_rate": 0.008}}
    assert card["reproduce"]["command"] == (f"git checkout {head} && dvc exp run -S 'data.source=local' "
                                            "-S '+data.local.path=/data/widerface'")
    text = render_markdown(card)
    assert "## Params (params.yaml; its `auto` knobs as the real photos recipe sets them, for data.source=local)" in text
    assert "learning_rate: 0.008" in text and "auto" not in text.split("## Params")[1].split("```")[1]
    assert card_for(project, tflite_files)["recipe"] is None  # no `auto` knob: nothing to say


def test_the_lineage_names_the_weights_training_recorded_it_started_from(tmp_path):
    model_dir = tmp_path / "detector"
    model_dir.mkdir()
    (model_dir / "detector.json").write_text(json.dumps(DETECTOR))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert load_inputs(tmp_path / "params.yaml", model_dir, tmp_path)["backbone"] is None  # trained before backbone.json
    (model_dir / "backbone.json").write_text(json.dumps(BACKBONE))
    assert load_inputs(tmp_path / "params.yaml", model_dir, tmp_path)["backbone"] == BACKBONE
    assert backbone_line(None).startswith("- Backbone start: not recorded")
    assert backbone_line({"backbone_weights": "none", "sha256": None}).endswith("(random initialisation)")
