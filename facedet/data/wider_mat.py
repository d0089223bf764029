"""The official WIDERFace evaluation ground truth: wider_face_val.mat and wider_{easy,medium,hard}_val.mat
(eval_tools/ground_truth/), read and written byte-deterministically, and built from val gt records.

Boxes are WIDER pixel `x1, y1, w, h`. Images are named by event and stem (file name without extension,
as the .mat `file_list` holds them); `EvalImage.key` is their eval key 'event/stem' (facedet.data.wider_gt).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from facedet.data.wider_gt import ATTRIBUTE_COLUMNS, WiderFormatError, WiderRecord, image_of_key

SUBSETS = ("easy", "medium", "hard")
# .mat variable names of the attribute columns, in gt txt column order
MAT_LABEL_LISTS = tuple(f"{name}_label_list" for name in ATTRIBUTE_COLUMNS)
EVAL_MAT_FILES = {
    "all": "wider_face_val.mat",
    "easy": "wider_easy_val.mat",
    "medium": "wider_medium_val.mat",
    "hard": "wider_hard_val.mat",
}


@dataclass
class EvalImage:
    """One val image of the official evaluation ground truth, in .mat order.

    boxes_xywh: float (n, 4) pixel x1, y1, w, h (a zero-face image has one all-zero row, as in the .mat);
    keep: subset name ('easy'/'medium'/'hard') -> int (k,) 1-based indices of the faces that count.
    """

    event: str
    stem: str
    boxes_xywh: np.ndarray
    keep: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """'<event>/<stem>', its eval key: the path of its prediction file without '.txt'."""
        return f"{self.event}/{self.stem}"

    @property
    def image(self) -> str:
        """'<event>/<stem>.jpg', its path under WIDER_val/images/."""
        return image_of_key(self.key)

_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: facedet (deterministic header)"


def _object_column(items: list[Any]) -> np.ndarray:
    arr = np.empty((len(items), 1), dtype=object)
    for k, item in enumerate(items):
        arr[k, 0] = item
    return arr


def eval_mat_bytes(images: list[EvalImage], face_attrs: list[np.ndarray]) -> dict[str, bytes]:
    """The four official eval .mat files as bytes, keyed by file name (see `write_eval_mats`)."""
    import scipy.io

    if len(images) != len(face_attrs):
        raise ValueError("one attribute array per image is needed")
    events: list[str] = []
    per_event: dict[str, list[int]] = {}
    for idx, img in enumerate(images):
        if img.event not in per_event:
            events.append(img.event)
            per_event[img.event] = []
        per_event[img.event].append(idx)

    def boxes_of(idx: int) -> np.ndarray:
        boxes = np.asarray(images[idx].boxes_xywh).reshape(-1, 4)
        return np.round(boxes).astype(np.int32) if len(boxes) else np.zeros((1, 4), np.int32)

    def attrs_of(idx: int) -> np.ndarray:
        attrs = np.asarray(face_attrs[idx]).reshape(-1, len(ATTRIBUTE_COLUMNS))
        n = len(np.asarray(images[idx].boxes_xywh).reshape(-1, 4))
        if len(attrs) != n:
            raise ValueError(f"{images[idx].key}: {n} boxes but {len(attrs)} attribute rows")
        return attrs.astype(np.uint8) if n else np.zeros((1, len(ATTRIBUTE_COLUMNS)), np.uint8)

    common: dict[str, np.ndarray] = {
        "event_list": _object_column([np.array([e]) for e in events]),
        "file_list": _object_column([_object_column([np.array([images[i].stem]) for i in per_event[e]])
                                     for e in events]),
        "face_bbx_list": _object_column([_object_column([boxes_of(i) for i in per_event[e]]) for e in events]),
    }
    for col, name in enumerate(MAT_LABEL_LISTS):
        common[name] = _object_column([_object_column([attrs_of(i)[:, col:col + 1].copy()
                                                        for i in per_event[e]]) for e in events])
    out = {EVAL_MAT_FILES["all"]: _savemat_bytes(scipy.io, common)}
    for subset in SUBSETS:
        def keep_of(idx: int) -> np.ndarray:
            keep = np.asarray(images[idx].keep.get(subset, ()), np.int64).reshape(-1)
            return keep.astype(np.uint16).reshape(-1, 1) if len(keep) else np.zeros((0, 1), np.uint16)

        variables = dict(common)
        variables["gt_list"] = _object_column([_object_column([keep_of(i) for i in per_event[e]]) for e in events])
        out[EVAL_MAT_FILES[subset]] = _savemat_bytes(scipy.io, variables)
    return out


def _savemat_bytes(sio: Any, variables: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    sio.savemat(buf, variables, format="5", do_compression=False, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")  # replace the timestamped header: byte-identical output
    return bytes(data)


def write_eval_mats(images: list[EvalImage], face_attrs: list[np.ndarray], out_dir: str | os.PathLike) -> list[Path]:
    """Write wider_face_val.mat and wider_{easy,medium,hard}_val.mat into `out_dir`.

    images: in .mat order (grouped by event, events in first-seen order); boxes pixel x1, y1, w, h;
    keep[subset] the 1-based face indices that count. face_attrs[i]: int (n_i, 6) columns blur
    expression illumination invalid occlusion pose of image i. Structure as the official files:
    object arrays (n_events, 1); int32 boxes; uint8 (n, 1) label lists; gt_list (k, 1), (0, 1) if empty;
    a zero-face image has one all-zero box row. The bytes are deterministic (fixed header).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in eval_mat_bytes(images, face_attrs).items():
        (out_dir / name).write_bytes(data)
        paths.append(out_dir / name)
    return paths


def _mat_str(value: Any) -> str:
    """A MATLAB string as scipy loads it (str array, nested 1-element object arrays, char rows)."""
    while isinstance(value, np.ndarray):
        if value.dtype == object:
            if value.size != 1:
                raise WiderFormatError(f"expected a string cell, got an array of shape {value.shape}")
            value = value.reshape(-1)[0]
        elif value.dtype.kind in "US":
            flat = value.reshape(-1)
            value = "".join(str(v) for v in flat) if flat.size else ""
        else:
            raise WiderFormatError(f"expected a string, got dtype {value.dtype}")
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


def _cells(value: Any) -> list[Any]:
    """The items of a MATLAB cell array (any orientation) as a flat list."""
    arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    if arr.dtype != object:
        return [arr]
    return list(arr.reshape(-1, order="F"))


def _unwrap(value: Any) -> Any:
    """Strip 1-element object wrappers around a cell's content."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


MatSource = str | os.PathLike | Mapping[str, bytes | IO[bytes]]


def read_eval_ground_truth(source: MatSource) -> list[EvalImage]:
    """Read the official eval ground truth from its four .mat files.

    source: a directory holding wider_face_val.mat and wider_{easy,medium,hard}_val.mat, or a
    mapping file name -> bytes / binary file object (e.g. zip members). Works on files written by
    MATLAB as well as by `write_eval_mats`. Returns the images in .mat order with boxes pixel
    x1, y1, w, h (float) and keep[subset] the 1-based face indices (int64).
    """
    import scipy.io

    def load(name: str) -> dict[str, Any]:
        if isinstance(source, Mapping):
            if name not in source:
                raise WiderFormatError(f"eval ground truth: {name} missing (have {sorted(source)})")
            blob = source[name]
            handle = io.BytesIO(blob) if isinstance(blob, (bytes, bytearray)) else blob
            label = name
        else:
            path = Path(source) / name
            if not path.is_file():
                raise WiderFormatError(f"{path}: eval ground truth file missing")
            handle, label = path, str(path)
        try:
            return scipy.io.loadmat(handle)
        except Exception as err:  # scipy raises several types for a corrupt file
            raise WiderFormatError(f"{label}: not a readable .mat file ({err})") from None

    full = load(EVAL_MAT_FILES["all"])
    events = [_mat_str(e) for e in _cells(full["event_list"])]
    files = [_cells(_unwrap(f)) for f in _cells(full["file_list"])]
    boxes = [_cells(_unwrap(b)) for b in _cells(full["face_bbx_list"])]
    images: list[EvalImage] = []
    for event, stems, event_boxes in zip(events, files, boxes):
        if len(stems) != len(event_boxes):
            raise WiderFormatError(f"{EVAL_MAT_FILES['all']}: event {event}: {len(stems)} files, "
                                   f"{len(event_boxes)} box arrays")
        for stem, bbx in zip(stems, event_boxes):
            arr = np.asarray(_unwrap(bbx), dtype=np.float64)
            images.append(EvalImage(event=event, stem=_mat_str(stem), boxes_xywh=arr.reshape(-1, 4)))
    for subset in SUBSETS:
        name = EVAL_MAT_FILES[subset]
        mat = load(name)
        keeps = [k for ev in _cells(mat["gt_list"]) for k in _cells(_unwrap(ev))]
        sub_files = [_mat_str(s) for ev in _cells(mat["file_list"]) for s in _cells(_unwrap(ev))]
        if sub_files != [img.stem for img in images]:
            raise WiderFormatError(f"{name}: its file_list differs from {EVAL_MAT_FILES['all']}")
        for img, keep in zip(images, keeps):
            img.keep[subset] = np.asarray(_unwrap(keep), dtype=np.int64).reshape(-1)
    return images


def eval_images_of(records: list[WiderRecord], membership: Callable[[np.ndarray], dict[str, np.ndarray]],
                   ) -> tuple[list[EvalImage], list[np.ndarray]]:
    """Eval ground truth of val records grouped by event (events sorted): images + (n, 6) attributes,
    ready for `eval_mat_bytes`. membership(gt_rows) -> subset -> 1-based indices of the faces that count."""
    ordered = sorted(records, key=lambda r: (r.event, r.image))
    images = [EvalImage(event=r.event, stem=r.stem, boxes_xywh=r.gt_rows[:, :4].astype(np.float64),
                        keep=membership(r.gt_rows)) for r in ordered]
    return images, [r.gt_rows[:, 4:] for r in ordered]
