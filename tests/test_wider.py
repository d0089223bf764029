"""WIDER format: a user parses the official gt txt (quirks included), gets one clear `file:line`
error for a broken file, writes/reads the official eval .mat files, and reads the zips in place."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import scipy.io
from synthetic_wider import TRAIN_FACES, TRAIN_IMAGES, ZERO_FACE_IMAGES, full_size_gt_txt

from facedet.data.wider import (
    EvalImage,
    WiderArchive,
    WiderFormatError,
    WiderRecord,
    eval_mat_bytes,
    format_gt_txt,
    parse_gt_txt,
    read_eval_ground_truth,
    write_eval_mats,
)

GT = """0--Parade/0_Parade_marchingband_1_849.jpg
1
449 330 122 149 0 0 0 0 0 0 
0--Parade/0_Parade_Parade_0_904.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Handshaking/1_Handshaking_Handshaking_1_35.jpg
3
10 20 30 40 2 1 0 0 1 0 
5 6 0 8 0 0 0 1 0 0 
-3 7 12 -2 1 0 1 0 2 1 
"""


def test_parser_reads_counts_and_the_zero_face_dummy_line():
    records = parse_gt_txt(GT, "gt.txt")
    assert [r.image for r in records] == ["0--Parade/0_Parade_marchingband_1_849.jpg",
                                          "0--Parade/0_Parade_Parade_0_904.jpg",
                                          "1--Handshaking/1_Handshaking_Handshaking_1_35.jpg"]
    assert [len(r.faces) for r in records] == [1, 0, 3]
    assert records[1].faces.shape == (0, 10) and records[0].faces.dtype == np.int32
    assert records[0].faces[0].tolist() == [449, 330, 122, 149, 0, 0, 0, 0, 0, 0]
    assert records[2].faces[2].tolist() == [-3, 7, 12, -2, 1, 0, 1, 0, 2, 1]  # column order kept
    assert records[2].event == "1--Handshaking" and records[2].stem == "1_Handshaking_Handshaking_1_35"


def test_parser_accepts_crlf_trailing_spaces_and_a_missing_final_newline():
    text = GT.replace("\n", "  \r\n").rstrip()
    assert [r.faces.tolist() for r in parse_gt_txt(text)] == [r.faces.tolist() for r in parse_gt_txt(GT)]


def test_writer_round_trips_and_writes_the_dummy_line():
    records = parse_gt_txt(GT)
    text = format_gt_txt(records)
    assert "0\n0 0 0 0 0 0 0 0 0 0 \n" in text
    again = parse_gt_txt(text)
    assert [(r.image, r.faces.tolist()) for r in again] == [(r.image, r.faces.tolist()) for r in records]


@pytest.mark.parametrize("text, where, what", [
    # count says 2, one face line follows, then the next image: desynchronised file
    ("a/x.jpg\n2\n1 2 3 4 0 0 0 0 0 0\nb/y.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n", "gt.txt:4", "face 2 of 2"),
    ("a/x.jpg\n1\n1 2 3 four 0 0 0 0 0 0\n", "gt.txt:3", "expected 10 integers"),
    ("a/x.jpg\n1\n1 2 3 4 0 0 0 0\n", "gt.txt:3", "expected 10 integers"),
    ("a/x.jpg\nmany\n", "gt.txt:2", "face count"),
    ("a/x.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n", "gt.txt:1", "truncated"),
    ("a/x.jpg\n", "gt.txt:1", "truncated"),
    ("a/x.jpg\n0\n0 0 0 0 0 0 0 0 0 0\na/x.jpg\n0\n", "gt.txt:4", "named twice"),
    ("a/x.jpg\n0\n1 2 3 4 0 0 0 0 0 0\nb/y.jpg\n0\n", "gt.txt:3", "face count 0 but a face line follows"),
])
def test_a_broken_file_gives_one_error_naming_file_and_line(text, where, what):
    with pytest.raises(WiderFormatError) as err:
        parse_gt_txt(text, "gt.txt")
    message = str(err.value)
    assert message.startswith(where + ":") and what in message and "\n" not in message


def test_a_count_that_is_too_small_is_reported_at_the_first_extra_face_line():
    text = "a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n5 6 7 8 0 0 0 0 0 0\nb/y.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"
    with pytest.raises(WiderFormatError) as err:
        parse_gt_txt(text, "gt.txt")
    assert str(err.value).startswith("gt.txt:4:") and "count of a/x.jpg is too small" in str(err.value)


def test_the_full_size_train_annotation_parses_with_exact_counts():
    """12,880 images / 159,424 faces like wider_face_train_bbx_gt.txt (bench/data_speed.py times it)."""
    text, counts = full_size_gt_txt(seed=1, crlf=True)
    records = parse_gt_txt(text, "wider_face_train_bbx_gt.txt")
    assert len(records) == TRAIN_IMAGES == 12_880
    assert [len(r.faces) for r in records] == counts.tolist()
    assert sum(len(r.faces) for r in records) == TRAIN_FACES == 159_424
    assert sum(len(r.faces) == 0 for r in records) == ZERO_FACE_IMAGES
    last = text.rstrip().rsplit("\r\n", 1)[1].split()
    assert records[-1].faces[-1].tolist() == [int(v) for v in last]


def _eval_set():
    images = [
        EvalImage("0--Parade", "0_Parade_a_1_1", np.array([[1, 2, 30, 40], [5, 6, 7, 8]], float),
                  {"easy": np.array([1]), "medium": np.array([1]), "hard": np.array([1, 2])}),
        EvalImage("0--Parade", "0_Parade_a_1_2", np.zeros((0, 4)), {}),
        EvalImage("1--Handshaking", "1_Handshaking_b_1_3", np.array([[9, 9, 50, 60]], float),
                  {"easy": np.array([], int), "medium": np.array([1]), "hard": np.array([1])}),
    ]
    attrs = [np.array([[0, 0, 0, 0, 0, 0], [2, 1, 1, 0, 2, 1]]), np.zeros((0, 6)), np.array([[1, 0, 0, 0, 1, 0]])]
    return images, attrs


def test_eval_mats_have_the_official_structure(tmp_path):
    images, attrs = _eval_set()
    paths = write_eval_mats(images, attrs, tmp_path)
    assert sorted(p.name for p in paths) == ["wider_easy_val.mat", "wider_face_val.mat",
                                             "wider_hard_val.mat", "wider_medium_val.mat"]
    full = scipy.io.loadmat(tmp_path / "wider_face_val.mat")
    assert full["event_list"].shape == (2, 1) and full["event_list"][0][0][0] == "0--Parade"
    assert full["file_list"][0][0].shape == (2, 1) and full["file_list"][0][0][1][0][0] == "0_Parade_a_1_2"
    boxes = full["face_bbx_list"][0][0][0][0]
    assert boxes.dtype == np.int32 and boxes.tolist() == [[1, 2, 30, 40], [5, 6, 7, 8]]
    assert full["face_bbx_list"][0][0][1][0].tolist() == [[0, 0, 0, 0]]  # zero-face image: one zero row
    blur = full["blur_label_list"][0][0][0][0]
    assert blur.dtype == np.uint8 and blur.shape == (2, 1) and blur[:, 0].tolist() == [0, 2]
    assert full["pose_label_list"][0][0][0][0][:, 0].tolist() == [0, 1]
    easy = scipy.io.loadmat(tmp_path / "wider_easy_val.mat")
    assert easy["gt_list"][0][0][0][0].shape == (1, 1)
    assert easy["gt_list"][0][0][1][0].shape == (0, 1) and easy["gt_list"][1][0][0][0].shape == (0, 1)
    assert eval_mat_bytes(images, attrs) == eval_mat_bytes(images, attrs)  # no timestamp inside


def test_eval_ground_truth_round_trips_from_a_directory_and_from_bytes(tmp_path):
    images, attrs = _eval_set()
    write_eval_mats(images, attrs, tmp_path)
    from_dir = read_eval_ground_truth(tmp_path)
    from_bytes = read_eval_ground_truth({p.name: p.read_bytes() for p in tmp_path.glob("*.mat")})
    for got in (from_dir, from_bytes):
        assert [g.key for g in got] == [i.key for i in images]
        assert got[0].boxes_xywh.tolist() == [[1, 2, 30, 40], [5, 6, 7, 8]]
        assert got[1].boxes_xywh.tolist() == [[0, 0, 0, 0]]
        assert got[0].keep["hard"].tolist() == [1, 2] and got[2].keep["easy"].tolist() == []


def test_reader_squeezes_matlab_style_cells(tmp_path):
    """MATLAB writes row cells and char arrays; the reader does not rely on scipy's own layout."""
    def cell(items, shape):
        arr = np.empty(shape, dtype=object)
        for k, item in enumerate(items):
            arr.flat[k] = item
        return arr

    common = {"event_list": cell([np.array(["0--Parade"])], (1, 1)),
              "file_list": cell([cell([np.array(["img_a"]), np.array(["img_b"])], (1, 2))], (1, 1)),
              "face_bbx_list": cell([cell([np.array([[1, 2, 3, 4]], np.double), np.zeros((0, 0))], (1, 2))], (1, 1))}
    scipy.io.savemat(tmp_path / "wider_face_val.mat", common)
    for name in ("easy", "medium", "hard"):
        gt = cell([cell([np.array([[1]], np.double), np.zeros((0, 0))], (1, 2))], (1, 1))
        scipy.io.savemat(tmp_path / f"wider_{name}_val.mat", {**common, "gt_list": gt})
    got = read_eval_ground_truth(tmp_path)
    assert [g.key for g in got] == ["0--Parade/img_a", "0--Parade/img_b"]
    assert got[0].keep["easy"].tolist() == [1] and got[1].keep["hard"].tolist() == []


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_archive_reads_members_in_place_and_names_what_is_missing(tmp_path):
    _zip(tmp_path / "WIDER_val.zip", {"WIDER_val/images/0--Parade/a.jpg": b"jpeg-a",
                                      "WIDER_val/images/0--Parade/b.jpg": b"jpeg-b"})
    _zip(tmp_path / "wider_face_split.zip", {"wider_face_split/wider_face_val_bbx_gt.txt": GT})
    images, attrs = _eval_set()
    mats = eval_mat_bytes(images, attrs)
    _zip(tmp_path / "eval_tools.zip", {f"eval_tools/ground_truth/{k}": v for k, v in mats.items()})
    archive = WiderArchive(tmp_path)
    text, source = archive.gt_txt("val")
    assert source == "wider_face_split.zip:wider_face_split/wider_face_val_bbx_gt.txt"
    assert len(archive.records("val")) == 3
    assert archive.image_paths("val") == ["0--Parade/a.jpg", "0--Parade/b.jpg"]
    assert archive.read_image("val", "0--Parade/b.jpg") == b"jpeg-b"
    assert [g.key for g in archive.eval_ground_truth()] == [i.key for i in images]
    with pytest.raises(FileNotFoundError, match=r"WIDER_val.zip: member 'WIDER_val/images/0--Parade/zz.jpg'"):
        archive.read_image("val", "0--Parade/zz.jpg")
    with pytest.raises(FileNotFoundError, match="WIDER_train.zip"):
        archive.read_image("train", "0--Parade/a.jpg")
    with pytest.raises(WiderFormatError, match="unsafe"):
        archive.read_image("val", "../etc/passwd")
    with pytest.raises(FileNotFoundError, match="wider_face_train_bbx_gt.txt"):
        archive.gt_txt("train")


def test_archive_rejects_a_zip_with_unsafe_member_names(tmp_path):
    _zip(tmp_path / "WIDER_val.zip", {"WIDER_val/images/../../evil.jpg": b"x"})
    with pytest.raises(WiderFormatError, match="unsafe member name"):
        WiderArchive(tmp_path).image_paths("val")


def test_records_hold_event_and_stem():
    rec = WiderRecord("7--Cheering/7_Cheering_Cheering_7_1.jpg", np.zeros((0, 10), np.int32))
    assert (rec.event, rec.stem) == ("7--Cheering", "7_Cheering_Cheering_7_1")
