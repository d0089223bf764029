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

from standin_detector import GRID, SIZE, face_image

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


def run_bench(*args: str, skip: tuple[str, ...] = ("blazeface", "yunet", "ulfd")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "real_faces.py"), *(f"--no-{row}" for row in skip), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_the_benchmark_scores_a_detector_that_finds_every_face(tmp_path, standin_tflite):
    write_tree(tmp_path / "tree", [(1, 2), (5, 4), (3, 6)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite),
                       "--json", str(tmp_path / "table.json"), "--frontier", str(tmp_path / "plots" / "frontier"))
    assert result.returncode == 0, result.stderr
    assert ("| detector | Easy | Medium | Hard | input | size KB | prepare ms | invoke ms | outputs ms | call ms "
            "| outside invoke | ns/px | peak RSS MB | alloc/call KB |") in result.stdout
    assert "WIDER val photos: 3" in result.stdout
    (row,) = json.loads((tmp_path / "table.json").read_text())
    assert row["detector"] == f"ours {standin_tflite.name}" and row["input"] == "64x64 uint8"
    assert row["easy"] > 0.95 and row["medium"] > 0.95 and row["hard"] > 0.95
    assert row["size_kb"] > 0 and row["latency_ms"] == pytest.approx(row["call_ms_median"], abs=0.006) and row["latency_ms"] > 0


def test_the_benchmark_says_where_each_call_goes(tmp_path, standin_tflite):
    """Per phase of our detector's call (prepare, invoke, outputs, the whole call): median <= p90;
    the phases add up to the call; the share outside invoke, ns per model-input pixel, memory."""
    write_tree(tmp_path / "tree", [(1, 2), (5, 4), (3, 6), (2, 2)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite),
                       "--json", str(tmp_path / "table.json"))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads((tmp_path / "table.json").read_text())
    for phase in ("prepare", "invoke", "outputs", "call"):
        assert 0 < row[f"{phase}_ms_median"] <= row[f"{phase}_ms_p90"], phase
    parts = row["prepare_ms_median"] + row["invoke_ms_median"] + row["outputs_ms_median"]
    assert parts == pytest.approx(row["call_ms_median"], rel=0.5)
    assert 0 < row["outside_invoke_share"] < 1
    assert row["ns_per_input_px"] == pytest.approx(row["call_ms_median"] * 1e6 / (64 * 64), rel=0.5)
    assert row["peak_rss_mb"] >= 0 and 0 < row["call_alloc_kb"] < 64 * 64 * 3 / 1024


def test_the_frontier_is_a_csv_and_a_png_of_ap_against_time(tmp_path, standin_tflite):
    write_tree(tmp_path / "tree", [(1, 2), (5, 4)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite),
                       "--json", str(tmp_path / "table.json"), "--frontier", str(tmp_path / "plots" / "frontier"))
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "table.json").read_text())[0]
    lines = (tmp_path / "plots" / "frontier.csv").read_text().splitlines()
    assert lines[0] == "detector,input,ms_per_photo,easy,medium,hard"
    assert lines[1] == (f"ours {standin_tflite.name},64x64 uint8,{row['latency_ms']},"
                        f"{row['easy']},{row['medium']},{row['hard']}")
    assert (tmp_path / "plots" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same from the JSON of that pass, by the frontier script alone.
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "frontier.py"), str(tmp_path / "table.json"),
                            str(tmp_path / "again")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.csv").read_text().splitlines() == lines


def test_a_reference_onnx_given_but_absent_is_one_line(tmp_path, standin_tflite):
    write_tree(tmp_path / "tree", [(1, 2)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite),
                       "--ulfd-onnx", str(tmp_path / "ulfd.onnx"), skip=("blazeface", "yunet"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'ulfd.onnx'}: no such ULFD .onnx file"]


@pytest.mark.skipif(not (ROOT.parent / "shared" / "anchors" / "ulfd_version-RFB-640.onnx").is_file(),
                    reason="the Ultra-Light detector's .onnx is not in ../shared/anchors")
def test_the_ultra_light_detector_is_a_row_split_into_phases(tmp_path, standin_tflite):
    write_tree(tmp_path / "tree", [(1, 2), (5, 4)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", str(standin_tflite),
                       "--ulfd-onnx", str(ROOT.parent / "shared" / "anchors" / "ulfd_version-RFB-640.onnx"),
                       "--json", str(tmp_path / "table.json"), skip=("blazeface", "yunet"))
    assert result.returncode == 0, result.stderr
    ours, ulfd = json.loads((tmp_path / "table.json").read_text())
    assert ulfd["detector"].startswith("Ultra-Light") and ulfd["input"] == "640x480 float"
    assert ulfd["invoke_ms_median"] > 0 and 0 <= ulfd["easy"] <= 1


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


def test_the_latency_benchmark_splits_our_call_on_a_photo(standin_tflite):
    """`bench/tflite_latency.py` ends with the same phases for our files, on one photo."""
    sys.path.insert(0, str(ROOT / "bench"))
    from tflite_latency import phase_breakdown

    photo = face_image(np.random.default_rng(3), 100, 200, side=50, height=300, width=400)
    header, rule, row = phase_breakdown([standin_tflite], photo, blocks=2, runs=3)
    assert header.split(" | ")[2:6] == ["prepare ms", "invoke ms", "outputs ms", "call ms"]
    cells = row.strip("| ").split(" | ")
    assert cells[:2] == [standin_tflite.name, "64x64"]
    medians = [float(cell.split(" / ")[0]) for cell in cells[2:6]]
    assert all(m >= 0 for m in medians) and medians[3] > 0 and cells[6].endswith("%")


def test_a_trained_keras_model_dir_is_a_float_row_at_the_input_asked(tmp_path):
    from facedet.model.config import DetectorConfig
    from facedet.model.ssd import build_detector
    from facedet.train.save import save_detector

    config = DetectorConfig(input_size=96, alpha=0.35, feature_strides=(8, 16, 32), head_channels=16)
    save_detector(build_detector(config), config, tmp_path / "probe" / "detector")
    write_tree(tmp_path / "tree", [(1, 2)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", "--keras", str(tmp_path / "probe" / "detector"),
                       "--keras-input", "128", "--json", str(tmp_path / "table.json"))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads((tmp_path / "table.json").read_text())
    assert row["detector"].endswith("detector (Keras)") and row["input"] == "128x128 float"


def test_a_keras_dir_without_a_model_is_one_line(tmp_path):
    write_tree(tmp_path / "tree", [(1, 2)])
    result = run_bench("--wider", str(tmp_path / "tree"), "--tflite", "--keras", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}: no model.keras here (a train stage's model dir)"
