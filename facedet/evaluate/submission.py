"""Predictions in the official WIDERFace submission layout, written and read back.

One text file per val image, `<pred_dir>/<event>/<stem>.txt`::

    0_Parade_marchingband_1_849        line 1: the image name (its stem, as the common tools write it)
    2                                  line 2: the number of detections K
    449.00 330.00 122.00 149.00 0.998000     K lines: x y w h score, sorted by score, descending
    12.50 40.25 8.00 9.75 0.031000

Boxes are pixel `x, y, w, h` in the original image; arrays in memory are float64 (K, 5)
`x, y, w, h, score`. The official MATLAB reader ignores line 1 and sorts by score itself; the
python port keys images by line 1, so we write the stem there and check it when reading.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from facedet.process.atomic import atomic_path
from facedet.runtime.detector_protocol import sort_by_score

COORD_FORMAT = "{:.2f}"
SCORE_FORMAT = "{:.6f}"


class PredictionFormatError(ValueError):
    """A prediction file or directory is malformed; the message names `file:line`."""


class MissingPredictionsWarning(UserWarning):
    """Some val images have no prediction file (they count as images without detections)."""


class EqualScoresWarning(UserWarning):
    """Every detection has the same score: AP ranks detections by score, so it measures nothing."""


def _split_key(key: str) -> tuple[str, str]:
    parts = key.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"prediction key {key!r} is not 'event/stem'")
    return parts[0], parts[1]


def format_prediction_file(stem: str, detections: np.ndarray) -> str:
    """The text of one prediction file (stem, count, rows sorted by score desc)."""
    dets = sort_by_score(np.asarray(detections, dtype=np.float64))
    if not np.all(np.isfinite(dets)):
        raise ValueError(f"{stem}: detections hold NaN or inf")
    fmt = " ".join([COORD_FORMAT] * 4 + [SCORE_FORMAT])
    lines = [stem, str(len(dets))] + [fmt.format(*row) for row in dets.tolist()]
    return "\n".join(lines) + "\n"


def write_predictions(pred_dir: str | os.PathLike, predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Write every image's detections to `<pred_dir>/<event>/<stem>.txt`, atomically as one directory.

    predictions: 'event/stem' -> (K, 5) pixel x, y, w, h, score (K may be 0: a file with count 0 is
    written, so every image of the set has its file). Replaces `pred_dir` as a whole.
    Returns the detections exactly as the files will read back (rounded to the written precision,
    sorted by score): evaluate these to get what the official tools report for the files.
    """
    written: dict[str, np.ndarray] = {}
    with atomic_path(pred_dir, is_dir=True) as tmp:
        made: set[str] = set()
        for key in sorted(predictions):
            event, stem = _split_key(key)
            if event not in made:
                (tmp / event).mkdir()
                made.add(event)
            text = format_prediction_file(stem, predictions[key])
            (tmp / event / f"{stem}.txt").write_text(text, encoding="utf-8", newline="\n")
            written[key] = _parse_rows(text.split("\n")[2:-1], key, 3)
    return written


def _parse_rows(rows: list[str], label: str, first_line: int) -> np.ndarray:
    values = []
    for offset, row in enumerate(rows):
        fields = row.split()
        try:
            if len(fields) != 5:
                raise ValueError
            numbers = [float(v) for v in fields]
        except ValueError:
            raise PredictionFormatError(f"{label}:{first_line + offset}: expected 'x y w h score', "
                                        f"got {row.strip()!r}") from None
        if not all(np.isfinite(numbers)):
            raise PredictionFormatError(f"{label}:{first_line + offset}: non-finite value in {row.strip()!r}")
        if numbers[2] < 0 or numbers[3] < 0:
            raise PredictionFormatError(f"{label}:{first_line + offset}: negative width or height in {row.strip()!r} "
                                        "(boxes are 'x y w h': left, top, width, height)")
        values.append(numbers)
    return np.asarray(values, dtype=np.float64).reshape(-1, 5)


def read_prediction_file(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """Read one prediction file: (image name of line 1, float64 (K, 5) x, y, w, h, score sorted by
    score desc). Raises PredictionFormatError naming `file:line` for any malformed line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PredictionFormatError(f"{path}:1: not a UTF-8 text file") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise PredictionFormatError(f"{path}:{len(lines) + 1}: expected the image name on line 1 "
                                    f"and the detection count on line 2")
    name = lines[0].strip()
    expected = {path.stem, path.stem + ".jpg"}
    if name.split("/")[-1] not in expected:
        raise PredictionFormatError(f"{path}:1: image name {name!r} does not match the file name")
    try:
        count = int(lines[1].strip())
        if count < 0:
            raise ValueError
    except ValueError:
        raise PredictionFormatError(f"{path}:2: expected the detection count, got {lines[1].strip()!r}") from None
    rows = lines[2:]
    if len(rows) != count:
        raise PredictionFormatError(f"{path}:2: count says {count} detections but {len(rows)} lines follow")
    return name, sort_by_score(_parse_rows(rows, str(path), 3))


def read_predictions(pred_dir: str | os.PathLike, image_keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read a submission directory: 'event/stem' -> float64 (K, 5) x, y, w, h, score (sorted desc).

    image_keys: the val images ('event/stem', e.g. `[img.key for img in ground_truth]`). With them,
    a directory or .txt file for an event or image outside that list raises PredictionFormatError,
    and images without a file are left out of the result (no detections) with one
    MissingPredictionsWarning saying how many. Without them, every `*/*.txt` file is read.
    An EqualScoresWarning when more than one detection was read and all have one score.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction directory not found")
    expected = None if image_keys is None else list(image_keys)
    events = None if expected is None else {_split_key(k)[0] for k in expected}
    allowed = None if expected is None else set(expected)
    out: dict[str, np.ndarray] = {}
    for event_dir in sorted(pred_dir.iterdir()):
        if event_dir.name.startswith("."):
            continue
        if not event_dir.is_dir():
            raise PredictionFormatError(f"{event_dir}: expected only event directories in {pred_dir}")
        if events is not None and event_dir.name not in events:
            raise PredictionFormatError(f"{event_dir}: unknown event {event_dir.name!r} (not in the ground truth)")
        for path in sorted(event_dir.iterdir()):
            if path.name.startswith(".") or path.suffix != ".txt":
                continue
            key = f"{event_dir.name}/{path.stem}"
            if allowed is not None and key not in allowed:
                raise PredictionFormatError(f"{path}: unknown image {key!r} (not in the ground truth)")
            _, out[key] = read_prediction_file(path)
    scores = np.concatenate([rows[:, 4] for rows in out.values()]) if out else np.zeros(0)
    if len(scores) > 1 and np.all(scores == scores[0]):
        warnings.warn(f"all {len(scores)} detections in {pred_dir} have the score {scores[0]:g}: AP ranks detections "
                      "by score, so it is meaningless here (write each detection's confidence)", EqualScoresWarning,
                      stacklevel=2)
    if expected is not None:
        missing = [k for k in expected if k not in out]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            warnings.warn(f"{len(missing)} of {len(expected)} images have no prediction file in {pred_dir} "
                          f"(counted as no detections): {shown}", MissingPredictionsWarning, stacklevel=2)
    return out
