"""WIDER archives: a user reads annotations, images and the eval ground truth straight from the
official zips, and an unsafe member name is refused in one line."""

from __future__ import annotations

import zipfile

import pytest

from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_mat import eval_mat_bytes
from facedet.process.zips import UnsafeMemberError

from synthetic_wider import SMALL_GT_TXT, small_eval_set


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_archive_reads_members_in_place_and_names_what_is_missing(tmp_path):
    _zip(tmp_path / "WIDER_val.zip", {"WIDER_val/images/0--Parade/a.jpg": b"jpeg-a",
                                      "WIDER_val/images/0--Parade/b.jpg": b"jpeg-b"})
    _zip(tmp_path / "wider_face_split.zip", {"wider_face_split/wider_face_val_bbx_gt.txt": SMALL_GT_TXT})
    images, attrs = small_eval_set()
    mats = eval_mat_bytes(images, attrs)
    _zip(tmp_path / "eval_tools.zip", {f"eval_tools/ground_truth/{k}": v for k, v in mats.items()})
    archive = WiderArchive(tmp_path)
    text, source = archive.gt_txt("val")
    assert source == "wider_face_split.zip:wider_face_split/wider_face_val_bbx_gt.txt"
    assert len(archive.records("val")) == 3
    assert archive.read_image("val", "0--Parade/a.jpg") == b"jpeg-a"
    assert archive.read_image("val", "0--Parade/b.jpg") == b"jpeg-b"
    assert [g.key for g in archive.eval_ground_truth()] == [i.key for i in images]
    with pytest.raises(FileNotFoundError, match=r"WIDER_val.zip: member 'WIDER_val/images/0--Parade/zz.jpg'"):
        archive.read_image("val", "0--Parade/zz.jpg")
    with pytest.raises(FileNotFoundError, match="WIDER_train.zip"):
        archive.read_image("train", "0--Parade/a.jpg")
    with pytest.raises(UnsafeMemberError, match="unsafe"):
        archive.read_image("val", "../etc/passwd")
    with pytest.raises(FileNotFoundError, match="wider_face_train_bbx_gt.txt"):
        archive.gt_txt("train")


def test_archive_rejects_a_zip_with_unsafe_member_names(tmp_path):
    _zip(tmp_path / "WIDER_val.zip", {"WIDER_val/images/../../evil.jpg": b"x"})
    with pytest.raises(UnsafeMemberError, match="unsafe member name"):
        WiderArchive(tmp_path).read_image("val", "evil.jpg")
