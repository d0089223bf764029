"""`facedet detect MODEL.tflite IMAGE_OR_DIR --out DIR`: a user points it at a folder of photos and
gets, per photo, a JSON of face boxes in that photo's pixels and a copy with the boxes drawn;
an unreadable photo or a model that is not a face detector gives one clear line and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facedet.cli import main
from facedet.export.tflite import export_tflite
from facedet.params.sections import ExportParams
from facedet.runtime.detect import detect_faces, list_images
from facedet.runtime.tflite_detector import TFLiteDetector

from standin_detector import GRID, build_standin, face_image, standin_anchors


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Float export of the stand-in with a zero box head: each detection is exactly its anchor."""
    rng = np.random.default_rng(2)
    path = tmp_path_factory.mktemp("detect") / "face_float.tflite"
    return export_tflite(build_standin(zero_boxes=True), standin_anchors(), [face_image(rng, 8, 8)], path,
                         ExportParams(max_detections=20, score_threshold=0.05, nms_iou=0.4), quantize="float")


@pytest.fixture
def photos(tmp_path):
    """Two photos of different sizes and formats, each with one bright block filling one grid cell
    of the model input (the stand-in's 'face'); returns (dir, {stem: expected best box x, y, w, h})."""
    folder = tmp_path / "photos"
    folder.mkdir()
    expected = {}
    for stem, (height, width, row, col), suffix in [("group", (128, 256, 2, 5), ".png"),
                                                    ("selfie", (96, 64, 6, 1), ".jpg")]:
        cell_h, cell_w = height // GRID, width // GRID
        image = face_image(np.random.default_rng(len(stem)), row * cell_h, col * cell_w, height=height, width=width,
                           square_hw=(cell_h, cell_w))
        Image.fromarray(image).save(folder / f"{stem}{suffix}", quality=95)
        expected[stem] = [col * cell_w, row * cell_h, cell_w, cell_h]
    (folder / "notes.txt").write_text("not an image")
    return folder, expected


def photo(folder, stem):
    return next(folder.glob(f"{stem}.*"))


def test_a_folder_of_photos_gives_json_and_drawn_images(model, photos, tmp_path, capsys):
    folder, expected = photos
    out = tmp_path / "out"
    assert main(["detect", str(model), str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["group.jpg", "group.json", "selfie.jpg", "selfie.json"]
    for stem, box in expected.items():
        result = json.loads((out / f"{stem}.json").read_text())
        assert set(result) == {"image", "width", "height", "faces"}
        assert result["image"] == str(photo(folder, stem))
        with Image.open(photo(folder, stem)) as original, Image.open(out / f"{stem}.jpg") as drawn:
            assert (result["width"], result["height"]) == original.size == drawn.size
        faces = result["faces"]
        assert faces and all(set(f) == {"box_xywh", "score"} and len(f["box_xywh"]) == 4 for f in faces)
        assert [f["score"] for f in faces] == sorted((f["score"] for f in faces), reverse=True)
        assert all(f["score"] >= 0.5 for f in faces)  # the default --score-threshold
        np.testing.assert_allclose(faces[0]["box_xywh"], box, atol=0.02)  # the block, in photo pixels
        assert f"{photo(folder, stem).name}: {len(faces)} face" in printed


def test_score_threshold_keeps_fewer_or_more_faces(model, photos, tmp_path):
    folder, _ = photos
    images = list_images(folder)
    assert [p.name for p in images] == ["group.png", "selfie.jpg"]  # notes.txt is not an image
    detector = TFLiteDetector(model)
    loose = detect_faces(detector, images, tmp_path / "loose", score_threshold=0.05)
    for result in loose:
        assert len(result.faces) >= 2  # the block's two anchors
        between = float(result.faces[:2, 4].mean())  # keeps the best face only
        (strict,) = detect_faces(detector, [result.image], tmp_path / "strict", score_threshold=between)
        assert len(strict.faces) == 1 and strict.faces[0, 4] >= between
        np.testing.assert_array_equal(strict.faces[0], result.faces[0])


def test_an_unreadable_image_is_one_line_and_exit_status_1(model, photos, tmp_path, capsys):
    folder, _ = photos
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["detect", str(model), str(folder / "broken.jpg"), "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"facedet detect: error: {folder / 'broken.jpg'}: cannot read image (cannot identify image file "
                   f"'{folder / 'broken.jpg'}')"]
    # In a folder the other photos are still done; the status still says something failed.
    assert main(["detect", str(model), str(folder), "--out", str(tmp_path / "o2")]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "broken.jpg: cannot read image" in captured.err
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.json")) == ["group.json", "selfie.json"]


def test_a_model_that_is_not_a_face_detector_is_one_line_and_exit_status_1(photos, tmp_path):
    folder, _ = photos
    classifier = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    wrong = tmp_path / "classifier.tflite"
    wrong.write_bytes(tf.lite.TFLiteConverter.from_keras_model(classifier).convert())
    run = subprocess.run([sys.executable, "-m", "facedet.cli", "detect", str(wrong), str(folder), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()  # no TensorFlow start-up chatter either
    assert line.startswith(f"facedet detect: error: {wrong}: expected the four TFLite_Detection_PostProcess outputs")
    assert line.endswith(": [1, 3]}")  # what the file outputs instead
    assert not (tmp_path / "out").exists()
    not_tflite = tmp_path / "photo.tflite"
    not_tflite.write_bytes((folder / "group.png").read_bytes())
    assert main(["detect", str(not_tflite), str(folder), "--out", str(tmp_path / "out")]) == 1


def test_usage_errors_exit_2_and_help_documents_the_output(model, photos, capsys):
    folder, _ = photos
    with pytest.raises(SystemExit) as missing_out:
        main(["detect", str(model), str(folder)])
    assert missing_out.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_threshold:
        main(["detect", str(model), str(folder), "--out", "x", "--score-threshold", "1.5"])
    assert bad_threshold.value.code == 2
    with pytest.raises(SystemExit) as shown:
        main(["detect", "--help"])
    assert shown.value.code == 0
    help_text = capsys.readouterr().out
    assert "box_xywh" in help_text and "--score-threshold" in help_text


def test_missing_inputs_and_colliding_names_are_clear(model, tmp_path, capsys):
    assert main(["detect", str(model), str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert "nowhere: no such image or directory" in capsys.readouterr().err
    folder = tmp_path / "same"
    folder.mkdir()
    for suffix in (".png", ".jpg"):
        Image.new("RGB", (40, 30)).save(folder / f"a{suffix}")
    with pytest.raises(ValueError, match="share the stem 'a'"):
        list_images(folder)


def test_recursive_reads_a_tree_of_folders_and_keeps_each_relative_path(model, photos, tmp_path, capsys):
    folder, expected = photos
    event = folder / "0--Parade"
    (event / "deeper").mkdir(parents=True)
    photo(folder, "group").rename(event / "group.png")
    photo(folder, "selfie").rename(event / "deeper/selfie.jpg")
    (folder / ".thumbs").mkdir()
    (folder / ".thumbs/group.png").write_bytes((event / "group.png").read_bytes())  # hidden: skipped
    assert [p.relative_to(folder).as_posix() for p in list_images(folder, recursive=True)] == [
        "0--Parade/deeper/selfie.jpg", "0--Parade/group.png"]
    with pytest.raises(ValueError, match="no images"):
        list_images(folder)  # not recursive: nothing at the top level

    out = tmp_path / "out"
    assert main(["detect", str(model), str(folder), "--recursive", "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "0--Parade/deeper/selfie.jpg", "0--Parade/deeper/selfie.json", "0--Parade/group.jpg", "0--Parade/group.json"]
    result = json.loads((out / "0--Parade/deeper/selfie.json").read_text())
    assert result["image"] == str(event / "deeper/selfie.jpg")
    np.testing.assert_allclose(result["faces"][0]["box_xywh"], expected["selfie"], atol=0.02)
    assert f"-> {out / '0--Parade/deeper/selfie'}.json" in capsys.readouterr().out


def test_recursive_allows_one_stem_in_two_folders_but_not_twice_in_one(tmp_path):
    for rel in ("a/x.jpg", "b/x.jpg"):
        (tmp_path / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30)).save(tmp_path / "tree" / rel)
    assert len(list_images(tmp_path / "tree", recursive=True)) == 2
    Image.new("RGB", (40, 30)).save(tmp_path / "tree/a/x.png")
    with pytest.raises(ValueError, match="a/x.jpg and a/x.png share the stem 'a/x'"):
        list_images(tmp_path / "tree", recursive=True)


def test_threads_as_the_user_asks_same_faces(model, photos, tmp_path):
    """`--threads N` runs the interpreter (XNNPACK) and the resize (OpenCV) on N threads; the faces
    are those of one thread."""
    import cv2

    folder, _ = photos
    found = {}
    for threads in (2, 1):
        out = tmp_path / f"out{threads}"
        assert main(["detect", str(model), str(folder), "--out", str(out), "--threads", str(threads)]) == 0
        assert cv2.getNumThreads() == threads
        found[threads] = sorted((p.name, p.read_text()) for p in out.glob("*.json"))
    assert found[2] == found[1] and len(found[1]) == 2
