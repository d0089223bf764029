"""`facedet detect MODEL.tflite IMAGE_OR_DIR --out DIR`: a user points it at a folder of photos and
gets, per photo, a JSON of face boxes in that photo's pixels and a copy with the boxes drawn;
an unreadable photo or a model that is not a face detector gives one clear line and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facedet.cli import main
from facedet.runtime.file_runner import detect_faces, list_inputs
from facedet.runtime.tflite_detector import TFLiteDetector

from standin_detector import GRID, face_image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model(standin_tflite):
    """The stand-in .tflite of conftest.py (a zero box head: each detection is exactly its anchor), by the
    name `facedet detect` gives it."""
    return standin_tflite


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
    assert sorted(p.name for p in out.iterdir()) == [
        ".facedet-detect-outputs", "group.jpg", "group.json", "selfie.jpg", "selfie.json"]  # what it wrote, listed
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
    images = list_inputs(folder)
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
    assert "nowhere: no such image, video or directory" in capsys.readouterr().err
    folder = tmp_path / "same"
    folder.mkdir()
    for suffix in (".png", ".jpg"):
        Image.new("RGB", (40, 30)).save(folder / f"a{suffix}")
    with pytest.raises(ValueError, match="share the stem 'a'"):
        list_inputs(folder)


def test_recursive_reads_a_tree_of_folders_and_keeps_each_relative_path(model, photos, tmp_path, capsys):
    folder, expected = photos
    event = folder / "0--Parade"
    (event / "deeper").mkdir(parents=True)
    photo(folder, "group").rename(event / "group.png")
    photo(folder, "selfie").rename(event / "deeper/selfie.jpg")
    (folder / ".thumbs").mkdir()
    (folder / ".thumbs/group.png").write_bytes((event / "group.png").read_bytes())  # hidden: skipped
    assert [p.relative_to(folder).as_posix() for p in list_inputs(folder, recursive=True)] == [
        "0--Parade/deeper/selfie.jpg", "0--Parade/group.png"]
    with pytest.raises(ValueError, match="no images"):
        list_inputs(folder)  # not recursive: nothing at the top level

    out = tmp_path / "out"
    assert main(["detect", str(model), str(folder), "--recursive", "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".facedet-detect-outputs", "0--Parade/deeper/selfie.jpg", "0--Parade/deeper/selfie.json",
        "0--Parade/group.jpg", "0--Parade/group.json"]
    result = json.loads((out / "0--Parade/deeper/selfie.json").read_text())
    assert result["image"] == str(event / "deeper/selfie.jpg")
    np.testing.assert_allclose(result["faces"][0]["box_xywh"], expected["selfie"], atol=0.02)
    assert f"-> {out / '0--Parade/deeper/selfie'}.json" in capsys.readouterr().out


def test_recursive_allows_one_stem_in_two_folders_but_not_twice_in_one(tmp_path):
    for rel in ("a/x.jpg", "b/x.jpg"):
        (tmp_path / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30)).save(tmp_path / "tree" / rel)
    assert len(list_inputs(tmp_path / "tree", recursive=True)) == 2
    Image.new("RGB", (40, 30)).save(tmp_path / "tree/a/x.png")
    with pytest.raises(ValueError, match="a/x.jpg and a/x.png share the stem 'a/x'"):
        list_inputs(tmp_path / "tree", recursive=True)


def files_under(folder):
    """Every file under `folder` with its bytes, the hidden ones included."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_detect_never_writes_into_its_input_or_over_a_file_it_did_not_write(model, photos, tmp_path, capsys):
    folder, _ = photos
    originals = files_under(folder)
    # The typo that used to overwrite every photo with its drawn copy: --out is the input folder.
    assert main(["detect", str(model), str(folder), "--out", str(folder)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"facedet detect: error: --out {folder}: ") and "input" in line
    assert files_under(folder) == originals
    # Nor a folder inside the input tree.
    assert main(["detect", str(model), str(folder), "--recursive", "--out", str(folder / "detections")]) == 1
    assert "input" in capsys.readouterr().err and files_under(folder) == originals
    # One photo, --out its own folder: its drawn copy would replace it (or sit beside it, a photo to the next run).
    for name in ("selfie.jpg", "group.png"):
        assert main(["detect", str(model), str(folder / name), "--out", str(folder)]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"facedet detect: error: --out {folder}: is the folder of the input {name}: detect never "
                        f"writes beside what it reads; choose another --out (nothing was written)")
        assert files_under(folder) == originals
    # Nor over the input itself by another name for its folder.
    (tmp_path / "alias").symlink_to(folder)
    assert main(["detect", str(model), str(tmp_path / "alias"), "--out", str(folder)]) == 1
    assert "input" in capsys.readouterr().err and files_under(folder) == originals
    # A file of the user's in --out with an output's name: refused before anything is written.
    out = tmp_path / "out"
    out.mkdir()
    (out / "selfie.json").write_text("my notes")
    assert main(["detect", str(model), str(folder), "--out", str(out)]) == 1
    assert "selfie.json exists and was not written by facedet detect" in capsys.readouterr().err
    assert files_under(out) == {"selfie.json": b"my notes"}
    # What detect wrote itself it may write again: a second run into the same --out works.
    fresh = tmp_path / "fresh"
    assert main(["detect", str(model), str(folder), "--out", str(fresh)]) == 0
    assert main(["detect", str(model), str(folder), "--out", str(fresh)]) == 0
    assert files_under(folder) == originals


def test_the_model_is_an_option_defaulting_to_the_released_file_and_the_old_form_still_works(
        model, photos, tmp_path, monkeypatch, capsys):
    import facedet.cli.detect as detect_command

    folder, expected = photos
    assert detect_command.RELEASED_MODEL.relative_to(REPO) == Path("models/release/face_detector_int8_320.tflite")
    assert main(["detect", str(folder), "--model", str(model), "--out", str(tmp_path / "new")]) == 0
    assert main(["detect", str(model), str(folder), "--out", str(tmp_path / "old")]) == 0  # MODEL.tflite INPUT
    for stem in expected:
        assert (tmp_path / "new" / f"{stem}.json").read_text() == (tmp_path / "old" / f"{stem}.json").read_text()
    monkeypatch.setattr(detect_command, "RELEASED_MODEL", model)  # no --model: the released file
    assert main(["detect", str(folder), "--out", str(tmp_path / "default")]) == 0
    assert (tmp_path / "default" / "selfie.json").read_text() == (tmp_path / "new" / "selfie.json").read_text()
    capsys.readouterr()
    missing = tmp_path / "models/release/face_detector_int8_320.tflite"
    monkeypatch.setattr(detect_command, "RELEASED_MODEL", missing)
    assert main(["detect", str(folder), "--out", str(tmp_path / "none")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"facedet detect: error: {missing}: no such model file") and "--model" in line
    assert main(["detect", str(folder), "--model", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "n")]) == 1
    assert capsys.readouterr().err.strip() == f"facedet detect: error: {tmp_path / 'nope.tflite'}: no such model file"
    assert not (tmp_path / "none").exists() and not (tmp_path / "n").exists()
    assert main(["detect", str(model), "--out", str(tmp_path / "o")]) == 1  # the model, and nothing to read
    assert capsys.readouterr().err.strip() == (f"facedet detect: error: {model} is a model, not an image: give what "
                                               f"to read too (facedet detect INPUT --model {model} --out DIR)")


def test_drawings_carry_each_score(model, photos, tmp_path):
    from facedet.runtime.drawing import draw_boxes, score_colour

    folder, expected = photos
    assert main(["detect", str(folder / "group.png"), "--model", str(model), "--out", str(tmp_path / "out")]) == 0
    face = json.loads((tmp_path / "out/group.json").read_text())["faces"][0]
    x, y, _, _ = (round(v) for v in face["box_xywh"])
    pixels = np.asarray(Image.open(folder / "group.png").convert("RGB"))
    detection = np.array([[*face["box_xywh"], face["score"]]])
    plain = np.asarray(draw_boxes(pixels, np.zeros((0, 4)), detection, min_score=0.5)).astype(int)
    labelled = np.asarray(draw_boxes(pixels, np.zeros((0, 4)), detection, min_score=0.5, label_scores=True)).astype(int)
    tab = labelled[y - 8:y - 2, x + 1:x + 20]  # above the box's top-left corner: the score tab
    assert (np.abs(labelled - plain).sum(axis=2) > 0).sum() > 100  # the label changed the drawing
    colour = np.array(score_colour(face["score"]))
    assert (np.abs(tab - colour).sum(axis=2) < 60).mean() > 0.3  # the tab, in the box's colour
    assert (tab.sum(axis=2) < 100).any()  # black text on it
    drawn = np.asarray(Image.open(tmp_path / "out/group.jpg").convert("RGB")).astype(int)
    assert np.abs(drawn[y - 8:y - 2, x + 1:x + 20] - tab).mean() < 40  # what detect wrote (JPEG-compressed)


def test_a_video_gives_a_drawn_video_and_one_json_line_per_frame(model, tmp_path, capsys):
    import cv2

    rng = np.random.default_rng(5)
    height, width, frames = 96, 128, 6
    cell_h, cell_w = height // GRID, width // GRID
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (width, height))
    for i in range(frames):  # the 'face' moves one cell right each frame
        rgb = face_image(rng, 3 * cell_h, i * cell_w, height=height, width=width, square_hw=(cell_h, cell_w))
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()
    out = tmp_path / "out"
    assert main(["detect", str(clip), "--model", str(model), "--out", str(out)]) == 0
    assert f"{clip}: {frames} frames" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(frames))
    assert [line["time_s"] for line in lines] == [round(i / 12.0, 3) for i in range(frames)]
    for i, line in enumerate(lines):
        assert (line["width"], line["height"]) == (width, height)
        np.testing.assert_allclose(line["faces"][0]["box_xywh"], [i * cell_w, 3 * cell_h, cell_w, cell_h], atol=0.02)
    drawn = cv2.VideoCapture(str(out / "clip.mp4"))
    read = []
    while (frame := drawn.read())[0]:
        read.append(frame[1])
    assert len(read) == frames and read[0].shape == (height, width, 3)
    assert drawn.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    # A video in a folder is read too; a file that is not a video is one line.
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos/broken.mp4").write_bytes(b"not a video")
    assert main(["detect", str(tmp_path / "videos"), "--model", str(model), "--out", str(tmp_path / "o2")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"facedet detect: error: {tmp_path / 'videos/broken.mp4'}: cannot read video")


def serve(folder):
    """A local HTTP server for `folder`; returns (server, base URL)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_url_is_downloaded_or_refused_in_one_line(model, photos, tmp_path, capsys):
    folder, expected = photos
    server, base = serve(folder)
    try:
        assert main(["detect", f"{base}/selfie.jpg", "--model", str(model), "--out", str(tmp_path / "out")]) == 0
        result = json.loads((tmp_path / "out/selfie.json").read_text())
        assert result["image"] == f"{base}/selfie.jpg"  # named by its URL, not mangled to 'http:/...'
        np.testing.assert_allclose(result["faces"][0]["box_xywh"], expected["selfie"], atol=0.02)
        assert (tmp_path / "out/selfie.jpg").is_file()
        capsys.readouterr()
        assert main(["detect", f"{base}/missing.jpg", "--model", str(model), "--out", str(tmp_path / "o2")]) == 1
        assert capsys.readouterr().err.strip() == (f"facedet detect: error: {base}/missing.jpg: cannot download "
                                                   f"(HTTP 404 File not found)")
        assert main(["detect", f"{base}/notes.txt", "--model", str(model), "--out", str(tmp_path / "o3")]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"facedet detect: error: {base}/notes.txt: cannot read image")
    finally:
        server.shutdown()
    assert main(["detect", f"{base}/selfie.jpg", "--model", str(model), "--out", str(tmp_path / "o4")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"facedet detect: error: {base}/selfie.jpg: cannot download (")


def test_a_folder_of_folders_without_recursive_gets_a_hint(model, photos, tmp_path, capsys):
    folder, _ = photos
    for stem in ("group", "selfie"):
        (folder / f"event_{stem}").mkdir()
        photo(folder, stem).rename(folder / f"event_{stem}" / photo(folder, stem).name)
    assert main(["detect", str(folder), "--model", str(model), "--out", str(tmp_path / "out")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("it holds 2 folders (event_group, ...): add --recursive to read them")


def test_format_wider_is_what_eval_wider_scores_and_format_coco_is_a_coco_results_file(model, photos, tmp_path,
                                                                                    capsys):
    from facedet.data.wider_mat import EvalImage, write_eval_mats

    folder, expected = photos
    event = folder / "0--Parade"
    event.mkdir()
    for stem in expected:
        photo(folder, stem).rename(event / photo(folder, stem).name)
    every = lambda n: np.arange(1, n + 1)  # noqa: E731
    truth = [EvalImage("0--Parade", stem, np.array([box], float), {s: every(1) for s in ("easy", "medium", "hard")})
             for stem, box in sorted(expected.items())]
    write_eval_mats(truth, [np.zeros((1, 6), np.uint8)] * len(truth), tmp_path / "gt")
    pred = tmp_path / "pred"
    assert main(["detect", str(folder), "--recursive", "--format", "wider", "--score-threshold", "0.02",
                 "--model", str(model), "--out", str(pred)]) == 0
    assert sorted(p.relative_to(pred).as_posix() for p in pred.rglob("*.txt")) == [
        "0--Parade/group.txt", "0--Parade/selfie.txt"]
    scored = tmp_path / "ap.json"
    assert main(["eval-wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--json", str(scored)]) == 0
    assert json.loads(scored.read_text()) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}

    coco = tmp_path / "coco"
    assert main(["detect", str(event), "--format", "coco", "--model", str(model), "--out", str(coco)]) == 0
    images = json.loads((coco / "images_coco.json").read_text())
    assert [(i["id"], i["file_name"]) for i in images["images"]] == [(1, "group.png"), (2, "selfie.jpg")]
    assert images["categories"] == [{"id": 1, "name": "face", "supercategory": "face"}]
    results = json.loads((coco / "detections_coco.json").read_text())
    assert {r["image_id"] for r in results} == {1, 2} and all(r["category_id"] == 1 for r in results)
    best = max((r for r in results if r["image_id"] == 2), key=lambda r: r["score"])
    np.testing.assert_allclose(best["bbox"], expected["selfie"], atol=0.02)


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
