"""`python bench/real_faces.py --wider TREE --tflite FILE` scores detectors on the val photos of a
WIDER-layout tree with the official protocol and prints one table (here: a stand-in detector on a
tiny tree it can solve, so its AP must come out near 1; and a tree with a photo missing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facedet.data.wider_mat import EvalImage, write_eval_mats
from facedet.export.tflite import export_tflite
from facedet.params.sections import ExportParams

from standin_detector import GRID, SIZE, build_standin, face_image, standin_anchors

ROOT = Path(__file__).resolve().parents[1]
CELL = SIZE // GRID


def write_tree(root: Path, cells: list[tuple[int, int]]) -> None:
    """WIDER_val/images/0--Parade/<i>.jpg, one bright cell each, and its four ground-truth .mat files."""
    rng = np.random.default_rng(0)
    images, attrs = [], []
    for i, (row, col) in enumerate(cells):
        path = root / "WIDER_val" / "images" / "0--Parade" / f"0_Parade_{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo = face_image(rng, row * CELL, col * CELL, side=CELL)
        Image.fromarray(photo).save(path, quality=100)
        box = np.array([[col * CELL, row * CELL, CELL, CELL]], np.float64)
        keep = {subset: np.array([1]) for subset in ("easy", "medium", "hard")}
        images.append(EvalImage("0--Parade", path.stem, box, keep))
        attrs.append(np.zeros((1, 6), np.int64))
    write_eval_mats(images, attrs, root / "eval_tools" / "ground_truth")


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "real_faces.py"), "--no-blazeface", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def standin_tflite(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    calibration = [face_image(rng, 8, 8), face_image(rng, 40, 24)]
    path = tmp_path_factory.mktemp("bench") / "face_detector_int8.tflite"
    return export_tflite(build_standin(zero_boxes=True), standin_anchors(), calibration, path,
                         ExportParams(max_detections=20, score_threshold=0.05, nms_iou=0.4), quantize="float")


def test_the_benchmark_scores_a_detector_that_finds_every_face(tmp_path, standin_tflite):
    write_tree(tmp_path / "tree", [(1, 2), (5, 4), (3, 6)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite),
                       "--json", str(tmp_path / "table.json"))
    assert result.returncode == 0, result.stderr
    assert "| detector | Easy | Medium | Hard | input | size KB | latency ms |" in result.stdout
    assert "WIDER val photos: 3" in result.stdout
    (row,) = json.loads((tmp_path / "table.json").read_text())
    assert row["detector"] == "ours face_detector_int8.tflite" and row["input"] == "64x64 uint8"
    assert row["easy"] > 0.95 and row["medium"] > 0.95 and row["hard"] > 0.95
    assert row["size_kb"] > 0 and row["latency_ms"] > 0


def test_a_missing_val_photo_is_one_line_naming_the_tree(tmp_path, standin_tflite):
    write_tree(tmp_path / "tree", [(1, 2), (5, 4)])
    (tmp_path / "tree" / "WIDER_val" / "images" / "0--Parade" / "0_Parade_1.jpg").unlink()
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'tree' / 'WIDER_val' / 'images'}: 1 val images of the ground truth are missing, "
        "e.g. 0--Parade/0_Parade_1.jpg"]


def test_a_tree_without_ground_truth_is_one_line(tmp_path, standin_tflite):
    result = run_bench("--wider", str(tmp_path), "--tflite", str(standin_tflite))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "wider_face_val.mat" in line
