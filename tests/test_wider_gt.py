"""WIDER gt txt: a user parses the official annotation file (quirks included), gets one clear
`file:line` error for a broken file, writes it back, and names an image either way the formats do."""

from __future__ import annotations

import numpy as np
import pytest

from facedet.data.wider_gt import WiderFormatError, WiderRecord, eval_key, format_gt_txt, image_of_key, parse_gt_txt

from synthetic_wider import SMALL_GT_TXT, TRAIN_FACES, TRAIN_IMAGES, ZERO_FACE_IMAGES, full_size_gt_txt


def test_parser_reads_counts_and_the_zero_face_dummy_line():
    records = parse_gt_txt(SMALL_GT_TXT, "gt.txt")
    assert [r.image for r in records] == ["0--Parade/0_Parade_marchingband_1_849.jpg",
                                          "0--Parade/0_Parade_Parade_0_904.jpg",
                                          "1--Handshaking/1_Handshaking_Handshaking_1_35.jpg"]
    assert [len(r.gt_rows) for r in records] == [1, 0, 3]
    assert records[1].gt_rows.shape == (0, 10) and records[0].gt_rows.dtype == np.int32
    assert records[0].gt_rows[0].tolist() == [449, 330, 122, 149, 0, 0, 0, 0, 0, 0]
    assert records[2].gt_rows[2].tolist() == [-3, 7, 12, -2, 1, 0, 1, 0, 2, 1]  # column order kept
    assert records[2].event == "1--Handshaking" and records[2].stem == "1_Handshaking_Handshaking_1_35"


def test_parser_accepts_crlf_trailing_spaces_and_a_missing_final_newline():
    text = SMALL_GT_TXT.replace("\n", "  \r\n").rstrip()
    as_written = [r.gt_rows.tolist() for r in parse_gt_txt(SMALL_GT_TXT)]
    assert [r.gt_rows.tolist() for r in parse_gt_txt(text)] == as_written


def test_writer_round_trips_and_writes_the_dummy_line():
    records = parse_gt_txt(SMALL_GT_TXT)
    text = format_gt_txt(records)
    assert "0\n0 0 0 0 0 0 0 0 0 0 \n" in text
    again = parse_gt_txt(text)
    assert [(r.image, r.gt_rows.tolist()) for r in again] == [(r.image, r.gt_rows.tolist()) for r in records]


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
    assert [len(r.gt_rows) for r in records] == counts.tolist()
    assert sum(len(r.gt_rows) for r in records) == TRAIN_FACES == 159_424
    assert sum(len(r.gt_rows) == 0 for r in records) == ZERO_FACE_IMAGES
    last = text.rstrip().rsplit("\r\n", 1)[1].split()
    assert records[-1].gt_rows[-1].tolist() == [int(v) for v in last]


def test_records_hold_event_and_stem():
    rec = WiderRecord("7--Cheering/7_Cheering_Cheering_7_1.jpg", np.zeros((0, 10), np.int32))
    assert (rec.event, rec.stem) == ("7--Cheering", "7_Cheering_Cheering_7_1")
    assert rec.key == "7--Cheering/7_Cheering_Cheering_7_1"


def test_an_image_path_and_its_eval_key_convert_both_ways():
    assert eval_key("0--Parade/0_Parade_marchingband_1_849.jpg") == "0--Parade/0_Parade_marchingband_1_849"
    assert eval_key("0--Parade/a.b.JPG") == "0--Parade/a.b"  # only the extension goes, whatever its case
    assert image_of_key("0--Parade/0_Parade_marchingband_1_849") == "0--Parade/0_Parade_marchingband_1_849.jpg"
    assert all(image_of_key(eval_key(r.image)) == r.image for r in parse_gt_txt(SMALL_GT_TXT))
