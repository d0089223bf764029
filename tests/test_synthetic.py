"""The synthetic dataset: a user runs fetch offline and gets the four official WIDER zips,
byte-identical for the same seed, with real-format quirks and consistent eval subsets."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from facedet.data.synthetic import subset_membership, write_synthetic_dataset
from facedet.data.wider_archive import WiderArchive
from facedet.params.sections import SyntheticParams

SMALL = SyntheticParams(seed=5, train_images=150, val_images=50, min_side=64, max_side=160, max_faces=15)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    counts = write_synthetic_dataset(SMALL, out)
    return out, counts


def test_same_seed_gives_byte_identical_archives(synthetic, tmp_path):
    out, _ = synthetic
    tiny = replace(SMALL, train_images=6, val_images=4)
    write_synthetic_dataset(tiny, tmp_path / "a")
    write_synthetic_dataset(tiny, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["WIDER_train.zip", "WIDER_val.zip", "eval_tools.zip", "wider_face_split.zip"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    write_synthetic_dataset(replace(tiny, seed=6), tmp_path / "c")
    assert (tmp_path / "c/WIDER_val.zip").read_bytes() != (tmp_path / "a/WIDER_val.zip").read_bytes()


def test_archives_use_the_official_layout_with_fixed_zip_metadata(synthetic):
    out, counts = synthetic
    with zipfile.ZipFile(out / "WIDER_train.zip") as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and len(names) == SMALL.train_images == counts["train_images"]
    assert all(re.fullmatch(r"WIDER_train/images/\d+--\w+/\d+_\w+_\d+_\d+\.jpg", n) for n in names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    with zipfile.ZipFile(out / "eval_tools.zip") as zf:
        assert sorted(zf.namelist()) == [f"eval_tools/ground_truth/wider_{n}_val.mat"
                                         for n in ("easy", "face", "hard", "medium")]
    with zipfile.ZipFile(out / "wider_face_split.zip") as zf:
        assert zf.namelist() == ["wider_face_split/wider_face_train_bbx_gt.txt",
                                 "wider_face_split/wider_face_val_bbx_gt.txt"]


def test_annotations_have_the_real_format_quirks(synthetic):
    out, _ = synthetic
    archive = WiderArchive(out)
    text, _ = archive.gt_txt("train")
    records = archive.records("train") + archive.records("val")
    faces = np.concatenate([r.gt_rows for r in records])
    assert "\n0\n0 0 0 0 0 0 0 0 0 0 \n" in text  # zero-face image with its dummy line
    assert any(len(r.gt_rows) == 0 for r in records) and max(len(r.gt_rows) for r in records) >= 10
    assert faces[:, 7].sum() > 0  # invalid faces
    assert ((faces[:, 2] <= 0) | (faces[:, 3] <= 0)).any()  # degenerate boxes
    for column in (4, 5, 6, 8, 9):  # blur, expression, illumination, occlusion, pose all vary
        assert len(set(faces[:, column])) > 1
    assert set(faces[:, 4]) == {0, 1, 2} and set(faces[:, 8]) == {0, 1, 2}
    past_edge = 0
    sides = []
    for split in ("train", "val"):
        for rec in archive.records(split):
            with Image.open(io.BytesIO(archive.read_image(split, rec.image))) as img:
                width, height = img.size
            assert SMALL.min_side <= min(width, height) and max(width, height) <= SMALL.max_side
            good = rec.gt_rows[(rec.gt_rows[:, 2] > 0) & (rec.gt_rows[:, 3] > 0)]
            past_edge += int(((good[:, 0] < 0) | (good[:, 1] < 0) | (good[:, 0] + good[:, 2] > width)
                              | (good[:, 1] + good[:, 3] > height)).sum())
            sides.extend(np.minimum(good[:, 2], good[:, 3]).tolist())
    assert past_edge > 0
    sides = np.array(sides)
    assert sides.min() >= 8 and (sides < 20).mean() > 0.2 and (sides >= 40).sum() > 0  # plenty of small faces


def test_eval_subsets_follow_the_documented_rules(synthetic):
    out, _ = synthetic
    archive = WiderArchive(out)
    by_key = {r.key: r for r in archive.records("val")}
    gt = archive.eval_ground_truth()
    assert sorted(g.key for g in gt) == sorted(by_key)
    totals = dict.fromkeys(("easy", "medium", "hard"), 0)
    for g in gt:
        faces = by_key[g.key].gt_rows
        expected = subset_membership(faces)
        for subset in totals:
            assert g.keep[subset].tolist() == expected[subset].tolist()
            totals[subset] += len(g.keep[subset])
        if len(faces):
            assert g.boxes_xywh.tolist() == faces[:, :4].tolist()
    assert 0 < totals["easy"] < totals["medium"] < totals["hard"]


def test_membership_rules_on_known_faces():
    faces = np.array([
        [0, 0, 50, 60, 0, 0, 0, 0, 0, 0],  # easy
        [0, 0, 50, 60, 2, 0, 0, 0, 0, 0],  # heavy blur: medium
        [0, 0, 25, 30, 0, 0, 0, 0, 1, 0],  # small, partly occluded: medium
        [0, 0, 50, 60, 0, 0, 0, 0, 2, 0],  # heavy occlusion: hard
        [0, 0, 12, 15, 0, 0, 0, 0, 0, 0],  # tiny: hard
        [0, 0, 50, 60, 0, 0, 0, 1, 0, 0],  # invalid: none
        [0, 0, 0, 9, 0, 0, 0, 0, 0, 0],    # degenerate: none
    ])
    got = subset_membership(faces)
    assert got["easy"].tolist() == [1]
    assert got["medium"].tolist() == [1, 2, 3]
    assert got["hard"].tolist() == [1, 2, 3, 4, 5]
