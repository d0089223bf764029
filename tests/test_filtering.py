"""Filtering: a user sets `filter:` params and sees exactly which faces and images were dropped,
and why; the kept table gives real image sizes and clipped pixel x1, y1, w, h boxes."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facedet.data.filtering import filter_split, inspect_image, inspect_images, load_filtered, run_filter
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import WiderRecord, format_gt_txt
from facedet.params.sections import FilterParams


def jpeg(width: int, height: int, mode: str = "RGB", fmt: str = "JPEG", noise: bool = False) -> bytes:
    buf = io.BytesIO()
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, format=fmt)
    else:
        Image.new(mode, (width, height), 128 if mode == "L" else None).save(buf, format=fmt)
    return buf.getvalue()


def face(x, y, w, h, blur=0, invalid=0, occlusion=0, pose=0):
    return [x, y, w, h, blur, 0, 0, invalid, occlusion, pose]


RECORDS = [
    WiderRecord("0--Parade/a.jpg", np.array([
        face(10, 10, 20, 24),                 # kept
        face(5, 5, 0, 10),                    # degenerate
        face(5, 5, 10, -3),                   # degenerate
        face(30, 30, 20, 20, invalid=1),      # invalid
        face(300, 10, 20, 20),                # outside the 100 x 80 image
        face(50, 50, 4, 4),                   # too small
        face(90, 70, 30, 30),                 # past the edge: clipped to 10 x 10
        face(40, 10, 20, 20, blur=2),         # heavy blur
        face(60, 10, 20, 20, occlusion=2),    # heavy occlusion
        face(70, 40, 20, 20, pose=1),         # atypical pose
    ], np.int32)),
    WiderRecord("0--Parade/broken.jpg", np.array([face(1, 1, 10, 10)], np.int32)),
    WiderRecord("0--Parade/gray.jpg", np.array([face(1, 1, 10, 10)], np.int32)),
    WiderRecord("0--Parade/cmyk.jpg", np.zeros((0, 10), np.int32)),
    WiderRecord("1--Handshaking/tiny.jpg", np.array([face(1, 1, 10, 10)], np.int32)),
    WiderRecord("1--Handshaking/missing.jpg", np.array([face(1, 1, 10, 10), face(1, 1, 10, 10)], np.int32)),
    WiderRecord("1--Handshaking/cut.jpg", np.array([face(1, 1, 10, 10)], np.int32)),
    WiderRecord("1--Handshaking/png.jpg", np.array([face(2, 2, 10, 10)], np.int32)),
]
FILES = {"0--Parade/a.jpg": jpeg(100, 80), "0--Parade/broken.jpg": jpeg(100, 80)[:200],
         "0--Parade/gray.jpg": jpeg(64, 48, "L"), "0--Parade/cmyk.jpg": jpeg(64, 64, "CMYK"),
         "1--Handshaking/tiny.jpg": jpeg(20, 100),
         "1--Handshaking/cut.jpg": jpeg(100, 80, noise=True)[:-500],  # header intact, scan data cut
         "1--Handshaking/png.jpg": jpeg(40, 40, fmt="PNG")}  # a PNG named .jpg
STRICT = FilterParams(min_face_px=6, max_blur=1, max_occlusion=1, drop_atypical_pose=True, min_image_px=32)


def make_raw(tmp_path):
    with zipfile.ZipFile(tmp_path / "WIDER_val.zip", "w") as zf:
        for name, data in FILES.items():
            zf.writestr(f"WIDER_val/images/{name}", data)
    with zipfile.ZipFile(tmp_path / "wider_face_split.zip", "w") as zf:
        zf.writestr("wider_face_split/wider_face_val_bbx_gt.txt", format_gt_txt(RECORDS))
    return WiderArchive(tmp_path)


def test_every_image_is_decoded_fully_as_training_decodes_it_and_libjpeg_warnings_drop_it():
    good, cut = jpeg(100, 80, noise=True), FILES["1--Handshaking/cut.jpg"]
    assert inspect_image(good).problem == "" and inspect_image(good + b"\0" * 64).problem == ""
    assert inspect_image(good + b"camera trailer").problem == ""  # junk after the end marker: kept
    info = inspect_image(cut)
    assert (info.problem, info.width, info.height) == ("truncated", 100, 80)
    # a half JPEG closed with an end marker: TF decodes it to a half-grey image, libjpeg only warns
    half = inspect_image(good[:len(good) // 2] + b"\xff\xd9")
    assert (half.problem, half.detail) == ("corrupt", "Corrupt JPEG data: premature end of data segment")
    garbled = good[:len(good) // 2] + bytes(range(200)) + good[len(good) // 2 + 200:]
    assert inspect_image(garbled).problem == "corrupt"
    rgba = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 20, 30, 0)).save(rgba, format="PNG")
    assert (inspect_image(rgba.getvalue()).mode, inspect_image(rgba.getvalue()).problem) == ("RGBA", "")


def test_header_check_reports_real_size_mode_and_broken_files():
    assert (inspect_image(FILES["0--Parade/a.jpg"]).width, inspect_image(FILES["0--Parade/a.jpg"]).height) == (100, 80)
    assert inspect_image(FILES["0--Parade/gray.jpg"]).mode == "L"
    assert inspect_image(FILES["0--Parade/cmyk.jpg"]).mode == "CMYK"
    assert inspect_image(b"not an image").problem == "unreadable"
    assert inspect_image(None).problem == "missing"


def test_filters_drop_what_they_should_and_count_every_reason(tmp_path):
    archive = make_raw(tmp_path)
    stats, sizes = run_filter(archive, STRICT, tmp_path / "interim", splits=("val",))
    s = stats["val"]
    assert s["images_in"] == 8 and s["faces_in"] == 17
    assert s["images_dropped"] == {"missing": 1, "unreadable": 1, "truncated": 1, "corrupt": 0,
                                   "unsupported_mode": 0, "too_small_image": 1, "no_faces_left": 0}
    assert [(b["image"], b["reason"]) for b in s["broken_images"]] == [
        ("0--Parade/broken.jpg", "unreadable"), ("1--Handshaking/cut.jpg", "truncated"),
        ("1--Handshaking/missing.jpg", "missing")]
    assert s["faces_dropped"] == {"degenerate": 2, "invalid": 1, "outside_image": 1, "too_small": 1, "blur": 1,
                                  "occlusion": 1, "atypical_pose": 1, "image_dropped": 5}
    assert s["images_reencoded"] == {"cmyk": 1, "not_jpeg": 1, "exif_orientation": 0}  # the shard stage stores these as RGB JPEGs
    assert s["faces_kept"] == 4 and s["images_kept"] == 4
    assert s["faces_in"] == s["faces_kept"] + sum(s["faces_dropped"].values())
    assert s["images_in"] == s["images_kept"] + sum(s["images_dropped"].values())
    kept = {img.image: img for img in load_filtered(tmp_path / "interim", "val")}
    assert sorted(kept) == ["0--Parade/a.jpg", "0--Parade/cmyk.jpg", "0--Parade/gray.jpg", "1--Handshaking/png.jpg"]
    assert (kept["1--Handshaking/png.jpg"].format, kept["1--Handshaking/png.jpg"].width) == ("PNG", 40)
    a = kept["0--Parade/a.jpg"]
    assert (a.width, a.height) == (100, 80)
    assert a.boxes_xywh.dtype == np.float32 and a.boxes_xywh.tolist() == [[10, 10, 20, 24], [90, 70, 10, 10]]
    assert kept["0--Parade/cmyk.jpg"].boxes_xywh.shape == (0, 4) and kept["0--Parade/cmyk.jpg"].mode == "CMYK"
    assert int(sizes["val"].sum()) == 4


def test_lenient_params_keep_more_and_empty_images_can_be_dropped(tmp_path):
    archive = make_raw(tmp_path)
    records = archive.records("val")
    infos = inspect_images(archive, "val", [r.image for r in records])
    lenient = replace(STRICT, drop_invalid=False, max_blur=2, max_occlusion=2, drop_atypical_pose=False,
                      clip_to_image=False, min_face_px=0)
    _, faces, stats = filter_split(records, infos, lenient)
    assert stats["faces_dropped"]["degenerate"] == 2 and stats["faces_dropped"]["outside_image"] == 1
    assert stats["faces_kept"] == 9  # 7 of a.jpg (invalid, tiny, blurred... kept) + gray.jpg + png.jpg
    assert [90, 70, 30, 30] in faces[["x1", "y1", "w", "h"]].values.tolist()  # not clipped
    images, _, stats = filter_split(records, infos, replace(STRICT, keep_empty_images=False))
    assert stats["images_dropped"]["no_faces_left"] == 1 and "0--Parade/cmyk.jpg" not in set(images["image"])


def test_tables_are_deterministic(tmp_path):
    archive = make_raw(tmp_path)
    run_filter(archive, STRICT, tmp_path / "one", splits=("val",))
    run_filter(archive, STRICT, tmp_path / "two", splits=("val",))
    for name in ("val_images.csv", "val_faces.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert list(pd.read_csv(tmp_path / "one/val_faces.csv").columns)[:5] == ["image", "x1", "y1", "w", "h"]


def _bad_raw(tmp_path, fault):
    from facedet.data.synthetic import write_synthetic_dataset
    from facedet.params.sections import SyntheticParams

    raw = tmp_path / "data/raw"
    write_synthetic_dataset(SyntheticParams(seed=2, train_images=3, val_images=2, min_side=48, max_side=64), raw)
    if fault == "dotdot member":
        with zipfile.ZipFile(raw / "WIDER_train.zip", "a") as zf:
            zf.writestr("WIDER_train/images/../../../evil.jpg", jpeg(8, 8))
    else:  # the val annotation names an image twice
        with zipfile.ZipFile(raw / "wider_face_split.zip") as zf:
            text = zf.read("wider_face_split/wider_face_val_bbx_gt.txt").decode()
        first = text.split("\n", 1)[0]
        with zipfile.ZipFile(raw / "wider_face_split.zip", "w") as zf:
            zf.writestr("wider_face_split/wider_face_train_bbx_gt.txt", format_gt_txt(RECORDS[:1]))
            zf.writestr("wider_face_split/wider_face_val_bbx_gt.txt", text + f"{first}\n0\n0 0 0 0 0 0 0 0 0 0\n")


@pytest.mark.parametrize("fault, expected", [
    ("dotdot member", "data/raw/WIDER_train.zip: unsafe member name 'WIDER_train/images/../../../evil.jpg'"),
    ("image named twice", "wider_face_split.zip:wider_face_split/wider_face_val_bbx_gt.txt:"),
])
def test_the_filter_stage_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch, fault, expected):
    from stages import filter as filter_stage

    _bad_raw(tmp_path, fault)
    (tmp_path / "params.yaml").write_text("filter: {workers: 1}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        filter_stage.main([])
    message = str(exit_.value.code)
    assert message.startswith("filter: error: ") and expected in message and "\n" not in message
    if fault == "image named twice":
        assert "named twice" in message
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]  # no interim, no temp dir
    assert not (tmp_path / "reports").exists()
