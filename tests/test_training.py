"""Training as the `train` stage runs it: a few steps on tiny synthetic shards lower the loss, write
model.keras + detector.json and DVCLive curves, and a restart resumes from the last checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facedet.inference import KerasDetector
from facedet.training import TrainParams, learning_rate_at, train
from test_input import TINY, write_face_records

PARAMS = TrainParams(steps=24, batch_size=4, learning_rate=0.01, warmup_steps=2, weight_decay=4e-5, seed=1,
                     checkpoint_every=8, log_every=1)


def curve(live_dir: Path, name: str = "loss/total") -> list[tuple[int, float]]:
    rows = (live_dir / "plots" / "metrics" / f"{name}.tsv").read_text().split("\n")[1:]
    return [(int(r.split("\t")[0]), float(r.split("\t")[1])) for r in rows if r]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    files = write_face_records(root, images=16)
    out = {"model": root / "detector", "ckpt": root / "checkpoints", "live": root / "dvclive"}
    metrics = train(PARAMS, TINY, files, out["model"], out["ckpt"], out["live"], val_files=files, progress=False)
    return files, out, metrics


def test_a_few_steps_lower_the_loss_and_write_the_detector(trained):
    _, out, metrics = trained
    losses = [v for _, v in curve(out["live"])]
    assert len(losses) == PARAMS.steps
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert {"loss/total", "loss/localization", "loss/classification", "learning_rate",
            "val/loss/total"} <= set(metrics)
    assert json.loads((out["live"] / "metrics.json").read_text())["step"] == PARAMS.steps - 1
    assert sorted(p.name for p in out["model"].iterdir()) == ["detector.json", "model.keras"]
    detections = KerasDetector(out["model"]).detect(np.zeros((90, 120, 3), np.uint8), score_threshold=0.0)
    assert detections.dtype == np.float32 and detections.shape[1] == 5
    assert np.all(np.diff(detections[:, 4]) <= 0)
    assert detections[:, 2].max() <= 120 + 1e-3 and detections[:, 3].max() <= 90 + 1e-3


def test_a_restart_resumes_from_the_last_checkpoint_and_continues_the_curves(trained, capsys):
    files, out, _ = trained
    # as if the run had been killed right after its checkpoint at step 16
    for leftover in out["ckpt"].glob(f"ckpt-{PARAMS.steps}.*"):
        leftover.unlink()
    (out["ckpt"] / "checkpoint").write_text('model_checkpoint_path: "ckpt-16"\n')
    (out["model"] / "model.keras").unlink()
    train(PARAMS, TINY, files, out["model"], out["ckpt"], out["live"], progress=False)
    assert "(step 16)" in capsys.readouterr().out
    assert (out["ckpt"] / f"ckpt-{PARAMS.steps}.index").is_file()
    assert (out["model"] / "model.keras").is_file()
    assert json.loads((out["live"] / "metrics.json").read_text())["step"] == PARAMS.steps - 1
    assert [s for s, _ in curve(out["live"])][-1] == PARAMS.steps - 1


def test_a_changed_recipe_starts_over(trained):
    files, out, _ = trained
    changed = TrainParams(**{**PARAMS.__dict__, "steps": 3, "learning_rate": 0.02})
    train(changed, TINY, files, out["model"], out["ckpt"], out["live"], progress=False)
    assert [s for s, _ in curve(out["live"])] == [0, 1, 2]
    assert not (out["ckpt"] / "ckpt-24.index").exists()


def test_learning_rate_warms_up_then_follows_a_cosine():
    params = TrainParams(steps=110, batch_size=1, learning_rate=1.0, warmup_steps=10, weight_decay=0.0)
    assert learning_rate_at(0, params) == pytest.approx(0.1)
    assert learning_rate_at(9, params) == pytest.approx(1.0)
    assert learning_rate_at(60, params) == pytest.approx(0.5)
    assert learning_rate_at(110, params) == pytest.approx(0.0)


def test_stage_help_says_what_it_reads_and_writes():
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "stages.train", "--help"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0
    assert "models/detector" in result.stdout and "data/tfrecords" in result.stdout
