"""WIDER eval ground truth: a user writes and reads the official .mat files (the structure MATLAB's
evaluation reads, byte-deterministic) and builds them from val gt records."""

from __future__ import annotations

import numpy as np
import scipy.io

from facedet.data.wider_gt import WiderRecord
from facedet.data.wider_mat import eval_images_of, eval_mat_bytes, read_eval_ground_truth, write_eval_mats

from synthetic_wider import small_eval_set


def test_eval_mats_have_the_official_structure(tmp_path):
    images, attrs = small_eval_set()
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
    images, attrs = small_eval_set()
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


def test_eval_images_come_from_val_records_grouped_by_event():
    records = [WiderRecord("1--Handshaking/1_b_1_3.jpg", np.array([[9, 9, 50, 60, 1, 0, 0, 0, 1, 0]], np.int32)),
               WiderRecord("0--Parade/0_a_1_1.jpg", np.array([[1, 2, 30, 40, 0, 0, 0, 0, 0, 0],
                                                              [5, 6, 7, 8, 2, 1, 1, 1, 2, 1]], np.int32))]
    images, attrs = eval_images_of(records, lambda rows: {"hard": np.flatnonzero(rows[:, 7] == 0) + 1})
    assert [i.key for i in images] == ["0--Parade/0_a_1_1", "1--Handshaking/1_b_1_3"]
    assert [i.image for i in images] == ["0--Parade/0_a_1_1.jpg", "1--Handshaking/1_b_1_3.jpg"]
    assert images[0].boxes_xywh.tolist() == [[1, 2, 30, 40], [5, 6, 7, 8]] and images[0].keep["hard"].tolist() == [1]
    assert attrs[0].tolist() == [[0, 0, 0, 0, 0, 0], [2, 1, 1, 1, 2, 1]]
