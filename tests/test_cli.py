"""`facedet eval-wider`: a user points it at predictions and the official .mat files and gets
the three APs printed and written as JSON; mistakes give one clear line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from facedet.cli import build_parser, main
from facedet.data.wider_mat import EvalImage, write_eval_mats
from facedet.evaluate.submission import write_predictions
from facedet.evaluate.wider_eval import evaluate_wider


@pytest.fixture
def val_set(tmp_path):
    rng = np.random.default_rng(0)
    images, attrs, preds = [], [], {}
    for i in range(6):
        n = int(rng.integers(1, 6))
        boxes = np.column_stack([rng.integers(0, 300, (n, 2)), rng.integers(8, 90, (n, 2))]).astype(float)
        keep = {"hard": np.arange(1, n + 1), "medium": np.arange(1, n + 1)[boxes[:, 3] >= 20],
                "easy": np.arange(1, n + 1)[boxes[:, 3] >= 40]}
        images.append(EvalImage(f"{i % 2}--Ev", f"{i % 2}_Ev_{i}", boxes, keep))
        attrs.append(np.zeros((n, 6), np.uint8))
        noisy = boxes + rng.normal(0, 2, boxes.shape)
        preds[images[-1].key] = np.column_stack([noisy, rng.random(n)])
    write_eval_mats(images, attrs, tmp_path / "gt")
    written = write_predictions(tmp_path / "pred", preds)
    return tmp_path, images, written


def test_eval_wider_prints_a_table_and_writes_json(val_set, capsys):
    tmp, images, written = val_set
    assert main(["eval-wider", "--pred", str(tmp / "pred"), "--gt", str(tmp / "gt"), "--json", str(tmp / "ap.json")]) == 0
    out = capsys.readouterr().out
    assert "easy" in out and "medium" in out and "hard" in out
    aps = json.loads((tmp / "ap.json").read_text())
    assert list(aps) == ["easy", "medium", "hard"]
    assert aps == evaluate_wider(images, written).ap


def test_missing_prediction_files_are_a_warning(val_set, capsys):
    tmp, images, _ = val_set
    (tmp / "pred" / f"{images[0].key}.txt").unlink()
    assert main(["eval-wider", "--pred", str(tmp / "pred"), "--gt", str(tmp / "gt")]) == 0
    assert "warning: 1 of 6 images have no prediction file" in capsys.readouterr().err


def test_errors_are_one_line(val_set, capsys):
    tmp, images, _ = val_set
    assert main(["eval-wider", "--pred", str(tmp / "pred"), "--gt", str(tmp / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("facedet eval-wider: error:") and err.count("\n") == 1 and "wider_face_val.mat" in err
    (tmp / "pred" / f"{images[0].key}.txt").write_text("x\n")
    assert main(["eval-wider", "--pred", str(tmp / "pred"), "--gt", str(tmp / "gt")]) == 1
    assert ".txt:" in capsys.readouterr().err


def test_help_everywhere():
    parser = build_parser()
    assert "eval-wider" in parser.format_help()
    for argv in (["--help"], ["eval-wider", "--help"]):
        done = subprocess.run([sys.executable, "-m", "facedet.cli", *argv], capture_output=True, text=True)
        assert done.returncode == 0 and "usage: facedet" in done.stdout
