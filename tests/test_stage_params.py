"""A typo or a bad value in params.yaml stops a stage before it does anything: the user sees one
line on stderr naming the key, exit status 1, no traceback, and no output is written. And every
param a user would sweep takes `dvc exp run -S key=value` values that the stages accept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facedet.params.loader import ParamsError, exit_on_bad_params, read_params_file

REPO = Path(__file__).resolve().parents[1]

# (stage, dotted key to set in params.yaml, bad value, what the one line must say)
BAD_PARAMS = [
    ("fetch", "data.synthetic.train_imags", 40,
     "unknown key 'data.synthetic.train_imags' (did you mean 'data.synthetic.train_images'?)"),
    ("fetch", "data.source", "wider", "'data.source' must be one of ['synthetic', 'widerface', 'local'], got 'wider'"),
    ("fetch", "data.embedded", {"seed": 1}, "'data.embedded' was renamed: write 'data.synthetic'"),
    ("filter", "filter.min_face_px", -1, "'filter.min_face_px' must be >= 0, got -1"),
    ("shard", "shard.workers", "two", "'shard.workers' must be an integer, got 'two'"),
    ("train", "train.stpes", 10, "unknown key 'train.stpes' (did you mean 'train.steps'?)"),
    ("train", "train.augment.flip", 2, "'train.augment.flip' must be <= 1"),
    ("train", "model.preset", "ssd_nope", "model preset 'ssd_nope' not found"),
    ("train", "train.batch_size", "auto", "'train.batch_size' cannot be auto: no recipe sets it"),
    ("evaluate", "evaluate.nms_iou", 1.5, "'evaluate.nms_iou' must be <= 1.0, got 1.5"),
    ("evaluate_tflite", "evaluate.images_to_draw", -1, "'evaluate.images_to_draw' must be >= 1, got -1"),
    ("export", "export.use_regular_nms", "yes", "'export.use_regular_nms' must be true or false, got 'yes'"),
    ("export", "export.input_sizes", [640, 500], "'export.input_sizes' must be multiples of 32 (>= 32), got [500]"),
    ("evaluate", "evaluate.input_size", 650, "'evaluate.input_size' must be 0 or a multiple of 32, got 650"),
    ("train", "train.augment.scale_crop_min", 3.0,
     "'train.augment.scale_crop_min' (3.0) must be <= 'train.augment.scale_crop_max' (1.6)"),
]

def params_with(dotted: str, value: object) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value
    return params


def run_stage(stage: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("stage, key, value, message", BAD_PARAMS, ids=[f"{c[0]}:{c[1]}" for c in BAD_PARAMS])
def test_a_bad_param_stops_the_stage_with_one_line_naming_the_key(tmp_path, stage, key, value, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_with(key, value), sort_keys=False))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = run_stage(stage, tmp_path)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    # the params are read before TensorFlow starts (facedet.params.sections imports none), so not even
    # TF's import-time log lines come before the one line
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{stage}: error: ") and message in lines[0], lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "the stage wrote something"


def test_exit_on_bad_params_turns_a_params_error_into_the_stage_exit():
    with pytest.raises(SystemExit) as exit_:
        with exit_on_bad_params("filter"):
            raise ParamsError("params.yaml: 'filter.workers' must be >= 1, got 0")
    assert exit_.value.code == "filter: error: params.yaml: 'filter.workers' must be >= 1, got 0"
    with exit_on_bad_params("filter"):  # no error: no exit
        pass


def sweepable_overrides(params: dict, prefix: str = "") -> list[str]:
    """`key=value` for every scalar param, as `dvc exp run -S` takes it (lists such as the mirror list
    are edited in params.yaml, not swept)."""
    overrides = []
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            overrides += sweepable_overrides(value, f"{dotted}.")
        elif not isinstance(value, list):
            overrides.append(f"{dotted}={str(value).lower() if isinstance(value, bool) else value}")
    return overrides


SWEEPS = ["data.source=widerface", "data.local.path=/data/widerface",
          "+data.extra_train.masks={format:voc,path:/data/masks,names:[mask]}",
          "data.synthetic.train_images=2000", "data.synthetic.seed=1",
          "filter.min_face_px=10", "filter.max_blur=1", "shard.train_shards=8", "shard.reencode=true",
          "model.preset=ssd_mobilenet_v2_256", "train.steps=3000", "train.batch_size=32",
          "train.learning_rate=1e-3", "train.weight_decay=0", "train.optimizer=rmsprop",
          "train.backbone_weights=imagenet", "train.loss.classification=focal", "train.augment.flip=0",
          "train.augment.zoom_out_max=2", "train.augment.scale_crop=1.0", "train.augment.scale_crop_max=2",
          "model.preset=ssd_mobilenet_v2_native_256", "evaluate.input_size=640",
          "evaluate.score_threshold=0.05", "evaluate.nms_iou=0.45",
          "export.max_detections=50", "export.use_regular_nms=true"]


def stage_specs() -> dict[str, type]:
    """Each params.yaml section and the class its stage validates it with."""
    from facedet.params.sections import SECTIONS

    return SECTIONS


@pytest.mark.parametrize("overrides", [pytest.param(None, id="every-param-as-is"), pytest.param(SWEEPS, id="sweeps")])
def test_every_param_can_be_swept_with_dvc_exp_run_set_param(tmp_path, overrides):
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` does to params.yaml

    from facedet.params.loader import load_section

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    apply_overrides(path, overrides or sweepable_overrides(read_params_file(path)))
    specs = stage_specs()
    assert set(specs) == set(read_params_file(path)), "a params.yaml section no stage validates"
    for section, spec in specs.items():
        load_section(section, spec, path)
    if overrides:
        swept = read_params_file(path)
        assert swept["train"]["learning_rate"] == pytest.approx(1e-3) and swept["data"]["source"] == "widerface"
        assert swept["data"]["extra_train"] == {"masks": {"format": "voc", "path": "/data/masks", "names": ["mask"]}}
