"""Predictions in the official submission layout: what we write reads back the same, and a
broken submission fails with the file and line named."""

import warnings

import numpy as np
import pytest

from facedet.evaluate.submission import (
    EqualScoresWarning,
    MissingPredictionsWarning,
    PredictionFormatError,
    read_prediction_file,
    read_predictions,
    write_predictions,
)

PREDS = {
    "0--Parade/0_Parade_marchingband_1_849": np.array([[10, 20, 30, 40, 0.25], [449, 330, 122, 149, 0.998]]),
    "0--Parade/0_Parade_Parade_0_904": np.zeros((0, 5)),
    "1--Handshaking/1_Handshaking_1_35": np.array([[1.234, 5.678, 9.5, 10.25, 0.5]], dtype=np.float32),
}


def test_written_files_follow_the_official_layout(tmp_path):
    write_predictions(tmp_path / "pred", PREDS)
    text = (tmp_path / "pred/0--Parade/0_Parade_marchingband_1_849.txt").read_text()
    assert text.splitlines() == ["0_Parade_marchingband_1_849", "2",
                                 "449.00 330.00 122.00 149.00 0.998000",   # sorted by score, descending
                                 "10.00 20.00 30.00 40.00 0.250000"]
    assert (tmp_path / "pred/0--Parade/0_Parade_Parade_0_904.txt").read_text() == "0_Parade_Parade_0_904\n0\n"


def test_read_back_equals_what_write_returns(tmp_path):
    written = write_predictions(tmp_path / "pred", PREDS)
    read = read_predictions(tmp_path / "pred", PREDS)
    assert sorted(read) == sorted(PREDS)
    for key in PREDS:
        np.testing.assert_array_equal(read[key], written[key])
    np.testing.assert_array_equal(written["1--Handshaking/1_Handshaking_1_35"], [[1.23, 5.68, 9.5, 10.25, 0.5]])


def test_rewriting_replaces_the_whole_directory(tmp_path):
    write_predictions(tmp_path / "pred", PREDS)
    write_predictions(tmp_path / "pred", {"2--Demonstration/x": np.zeros((0, 5))})
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["2--Demonstration"]


@pytest.mark.parametrize("lines, where", [
    (["a", "2", "1 2 3 4 0.5", "1 2 3 oops 0.5"], ":4:"),
    (["a", "1", "1 2 3 4"], ":3:"),
    (["a", "two"], ":2:"),
    (["a", "3", "1 2 3 4 0.5"], ":2:"),
    (["someone_else", "0"], ":1:"),
    (["a"], ":2:"),
    (["a", "2", "1 2 3 4 0.5", "10 20 -30 40 0.4"], ":4: negative width or height"),
])
def test_a_malformed_file_is_reported_with_file_and_line(tmp_path, lines, where):
    path = tmp_path / "a.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PredictionFormatError, match=f"a.txt{where}"):
        read_prediction_file(path)


def test_image_name_line_may_carry_jpg_and_event(tmp_path):
    path = tmp_path / "img_1.txt"
    path.write_text("0--Parade/img_1.jpg\r\n1\r\n1 2 3 4 0.5 \r\n\r\n")
    name, boxes = read_prediction_file(path)
    assert name == "0--Parade/img_1.jpg"
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4, 0.5]])


def test_missing_files_warn_once_with_the_count(tmp_path):
    write_predictions(tmp_path / "pred", {k: v for k, v in PREDS.items() if "Handshaking" not in k})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = read_predictions(tmp_path / "pred", PREDS)
    assert "1--Handshaking/1_Handshaking_1_35" not in read
    assert len(caught) == 1 and caught[0].category is MissingPredictionsWarning
    assert "1 of 3 images have no prediction file" in str(caught[0].message)


def test_unknown_event_or_image_is_an_error(tmp_path):
    write_predictions(tmp_path / "pred", PREDS)
    keys = [k for k in PREDS if "Handshaking" not in k]
    with pytest.raises(PredictionFormatError, match="unknown event '1--Handshaking'"):
        read_predictions(tmp_path / "pred", keys)
    with pytest.raises(PredictionFormatError, match="unknown image"):
        read_predictions(tmp_path / "pred", keys[:1] + ["1--Handshaking/other"])
    with pytest.raises(FileNotFoundError):
        read_predictions(tmp_path / "nope", keys)


def test_equal_scores_everywhere_warn_that_ap_means_nothing(tmp_path):
    write_predictions(tmp_path / "pred", {k: np.column_stack([v[:, :4], np.ones(len(v))]) for k, v in PREDS.items()})
    with pytest.warns(EqualScoresWarning, match="all 3 detections in .* have the score 1: AP ranks detections by score"):
        read_predictions(tmp_path / "pred", PREDS)
    write_predictions(tmp_path / "varied", PREDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scores that differ: no warning
        read_predictions(tmp_path / "varied", PREDS)
