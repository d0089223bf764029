"""WIDERFace format: the gt txt annotation files, the official eval ground-truth .mat files,
and reading both (and the images) straight from the official zip archives.

Boxes in this module are WIDER pixel boxes `x1, y1, w, h`.

gt txt (`wider_face_split/wider_face_{train,val}_bbx_gt.txt`), one block per image::

    0--Parade/0_Parade_marchingband_1_849.jpg
    1
    449 330 122 149 0 0 0 0 0 0      x1 y1 w h blur expression illumination invalid occlusion pose

An image with no faces has count `0` followed by one dummy line of ten zeros.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

SUBSETS = ("easy", "medium", "hard")

SPLITS = ("train", "val")
FACE_COLUMNS = ("x1", "y1", "w", "h", "blur", "expression", "illumination", "invalid", "occlusion", "pose")
ATTRIBUTE_COLUMNS = FACE_COLUMNS[4:]
# .mat variable names of the attribute columns, in gt txt column order
MAT_LABEL_LISTS = tuple(f"{name}_label_list" for name in ATTRIBUTE_COLUMNS)
EVAL_MAT_FILES = {
    "all": "wider_face_val.mat",
    "easy": "wider_easy_val.mat",
    "medium": "wider_medium_val.mat",
    "hard": "wider_hard_val.mat",
}
# official archive names and member layout
IMAGES_ZIP = {"train": "WIDER_train.zip", "val": "WIDER_val.zip"}
SPLIT_ZIP = "wider_face_split.zip"
EVAL_TOOLS_ZIP = "eval_tools.zip"
GT_TXT_MEMBER = {s: f"wider_face_split/wider_face_{s}_bbx_gt.txt" for s in SPLITS}
EVAL_GT_DIR_MEMBER = "eval_tools/ground_truth"
# present when extra sources joined the train split (facedet.data.extra_train): which events are which source
TRAIN_SOURCES_MEMBER = "wider_face_split/train_sources.json"


def image_member(split: str, rel_path: str) -> str:
    """Zip member name of image 'event/name.jpg' of `split` ('WIDER_<split>/images/...')."""
    return f"WIDER_{split}/images/{rel_path}"


class WiderFormatError(ValueError):
    """A WIDER annotation or archive is malformed; the message says `file:line: what, text`."""


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
        """'<event>/<stem>', the path of its prediction file without '.txt'."""
        return f"{self.event}/{self.stem}"


@dataclass
class WiderRecord:
    """One annotated image of a gt txt file.

    image: 'event/name.jpg' (path under WIDER_<split>/images/);
    faces: int32 (N, 10) columns x1 y1 w h blur expression illumination invalid occlusion pose
    (pixel x1, y1, w, h boxes; N == 0 for a zero-face image, its dummy line is not a face).
    """

    image: str
    faces: np.ndarray

    @property
    def event(self) -> str:
        return self.image.split("/", 1)[0]

    @property
    def stem(self) -> str:
        return posixpath.splitext(posixpath.basename(self.image))[0]


# ---------------------------------------------------------------------------------------------
# gt txt


def parse_gt_txt(text: str, source: str = "<gt txt>") -> list[WiderRecord]:
    """Parse a WIDER gt txt file into records, in file order.

    Handles the zero-face dummy line, CRLF and trailing spaces; blank lines are ignored.
    Raises WiderFormatError naming `source:line` on a non-numeric or short face line, a count
    that does not match the face lines, a truncated file, or an image named twice.
    """
    lines = [(n, raw.strip()) for n, raw in enumerate(text.splitlines(), start=1)]
    lines = [(n, s) for n, s in lines if s]
    records: list[WiderRecord] = []
    seen: dict[str, int] = {}
    i = 0

    def fail(lineno: int, what: str, offending: str) -> WiderFormatError:
        return WiderFormatError(f"{source}:{lineno}: {what}, got {offending!r}")

    while i < len(lines):
        lineno, image = lines[i]
        if not image.lower().endswith((".jpg", ".jpeg", ".png")) or "/" not in image:
            hint = ""
            if records and _face_values(image) is not None:
                hint = f" (a face line: the count of {records[-1].image} is too small?)"
            raise fail(lineno, f"expected an image path 'event/name.jpg'{hint}", image)
        if image in seen:
            raise fail(lineno, f"image named twice (first at line {seen[image]})", image)
        seen[image] = lineno
        if i + 1 >= len(lines):
            raise fail(lineno, "truncated file: face count missing after image path", image)
        count_no, count_text = lines[i + 1]
        try:
            count = int(count_text)
        except ValueError:
            raise fail(count_no, f"expected the face count of {image}", count_text) from None
        if count < 0:
            raise fail(count_no, "negative face count", count_text)
        i += 2
        faces = np.zeros((count, 10), np.int32)
        for k in range(count):
            if i >= len(lines):
                raise fail(lineno, f"truncated file: {image} announces {count} faces, found {k}", image)
            face_no, face_text = lines[i]
            values = _face_values(face_text)
            if values is None:
                raise fail(face_no, f"face {k + 1} of {count} of {image}: expected 10 integers "
                           f"(count does not match the face lines?)", face_text)
            faces[k] = values
            i += 1
        if count == 0 and i < len(lines) and (dummy := _face_values(lines[i][1])) is not None:
            if any(dummy):  # a real face after a count of 0: the count is wrong
                raise fail(lines[i][0], f"{image} has face count 0 but a face line follows "
                           "(the zero-face dummy line is all zeros)", lines[i][1])
            i += 1  # the dummy line of a zero-face image
        records.append(WiderRecord(image=image, faces=faces))
    return records


def _face_values(text: str) -> list[int] | None:
    parts = text.split()
    if len(parts) != 10:
        return None
    try:
        return [int(p) for p in parts]
    except ValueError:
        return None


def format_gt_txt(records: Iterable[WiderRecord]) -> str:
    """The official gt txt text of `records` ('\\n' newlines, dummy line for zero-face images)."""
    out: list[str] = []
    for rec in records:
        faces = np.asarray(rec.faces, np.int64).reshape(-1, 10)
        out.append(rec.image)
        out.append(str(len(faces)))
        if len(faces) == 0:
            out.append("0 0 0 0 0 0 0 0 0 0 ")
        for face in faces:
            out.append(" ".join(str(int(v)) for v in face) + " ")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# official eval ground truth (.mat)

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


# ---------------------------------------------------------------------------------------------
# the official archives


def check_member_name(name: str, what: str) -> str:
    """`name` if it is a safe relative zip member name; WiderFormatError naming `what` if it is
    absolute, has a drive letter or backslashes, or a '..' part (it could escape on extraction)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/", 1)[0] \
            or any(part == ".." for part in name.split("/")):
        raise WiderFormatError(f"{what}: unsafe member name {name!r} (absolute or '..')")
    return name


ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _fixed_info(name: str, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(check_member_name(name, "zip member"), date_time=ZIP_DATE)
    info.create_system = 3
    info.external_attr = (0o755 << 16 | 0x10) if name.endswith("/") else 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return info


def zip_bytes(members: Mapping[str, bytes], compress: bool) -> bytes:
    """A deterministic zip of `members` (name -> bytes): sorted names, fixed date and permissions,
    deflated (level 6) if `compress` else stored. Same members give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            zf.writestr(_fixed_info(name, compress), members[name], compresslevel=6 if compress else None)
    return buf.getvalue()


@contextlib.contextmanager
def stored_zip_writer(path: str | os.PathLike, mode: str = "w") -> Iterator[Callable[[str, bytes], None]]:
    """Yield add(name, data), which writes one member stored (no compression) with fixed date and
    permissions to the zip at `path` (mode "w": a new zip, "a": appended after its members), so the same
    calls give the same bytes. Names are checked (WiderFormatError on an unsafe one)."""
    with zipfile.ZipFile(path, mode) as out:
        yield lambda name, data: out.writestr(_fixed_info(name, False), data)


def repack_stored(src: str | os.PathLike, dst: str | os.PathLike, progress: Any = None) -> int:
    """Copy zip `src` to `dst` with every member stored (no compression), in the same order, with the
    same names and bytes, and fixed dates and permissions: readers then get a member with one seek
    and no inflate (JPEGs barely compress, so the archive grows little). Member names are checked
    (WiderFormatError on an unsafe one). progress: optional callable(n). Returns the member count."""
    count = 0
    with zipfile.ZipFile(src) as source, zipfile.ZipFile(dst, "w") as out:
        for info in source.infolist():
            out.writestr(_fixed_info(check_member_name(info.filename, str(src)), False), source.read(info))
            count += 1
            if progress:
                progress(1)
    return count


def eval_mat_members(archive: zipfile.ZipFile, what: str) -> dict[str, str]:
    """Official .mat file name -> member name of the eval ground truth inside an eval_tools zip
    (members '<...>/ground_truth/<name>.mat'); FileNotFoundError naming `what` if one is missing."""
    found: dict[str, str] = {}
    for member in archive.namelist():
        base = posixpath.basename(member)
        if base in EVAL_MAT_FILES.values() and posixpath.dirname(member).endswith("ground_truth"):
            found.setdefault(base, member)
    missing = sorted(set(EVAL_MAT_FILES.values()) - set(found))
    if missing:
        raise FileNotFoundError(f"{what}: members missing: " + ", ".join(f"{EVAL_GT_DIR_MEMBER}/{m}" for m in missing))
    return found


def check_archive(path: str | os.PathLike, name: str | None = None) -> int:
    """Check that `path` is the official archive `name` (default: its file name): a readable zip,
    only safe member names, and the members later stages read. Returns the member count.
    Raises WiderFormatError or FileNotFoundError naming the file."""
    path = Path(path)
    name = name or path.name
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for member in names:
                check_member_name(member, str(path))
            if name == EVAL_TOOLS_ZIP:
                eval_mat_members(archive, str(path))
    except zipfile.BadZipFile as err:
        raise WiderFormatError(f"{path}: not a zip archive ({err})") from None
    required: tuple[str, ...] = ()
    if name == SPLIT_ZIP:
        required = tuple(GT_TXT_MEMBER.values())
    for member in required:
        if member not in names:
            raise FileNotFoundError(f"{path}: member {member!r} missing")
    for split, zip_name in IMAGES_ZIP.items():
        prefix = image_member(split, "")
        if name == zip_name and not any(n.startswith(prefix) and not n.endswith("/") for n in names):
            raise FileNotFoundError(f"{path}: no images under {prefix!r}")
    return len(names)


class WiderArchive:
    """Read WIDERFace members straight from the official zips in `raw_dir` (no unpacking).

    raw_dir holds WIDER_train.zip, WIDER_val.zip, wider_face_split.zip and eval_tools.zip.
    Zip handles are opened lazily, once per process and thread (instances pickle for worker pools).
    """

    def __init__(self, raw_dir: str | os.PathLike):
        self.raw_dir = Path(raw_dir)
        self._local = threading.local()
        self._eval_ground_truth: list[EvalImage] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"raw_dir": self.raw_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.raw_dir = state["raw_dir"]
        self._local = threading.local()
        self._eval_ground_truth = None

    def _zip(self, name: str) -> zipfile.ZipFile:
        cache = getattr(self._local, "zips", None)
        if cache is None or getattr(self._local, "pid", None) != os.getpid():
            cache = self._local.zips = {}
            self._local.pid = os.getpid()
        if name not in cache:
            path = self.raw_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: archive missing (run the fetch stage: python -m stages.fetch)")
            try:
                cache[name] = zipfile.ZipFile(path)
            except zipfile.BadZipFile as err:
                raise WiderFormatError(f"{path}: not a zip archive ({err})") from None
            for member in cache[name].namelist():
                check_member_name(member, str(path))
        return cache[name]

    def _read(self, zip_name: str, member: str) -> bytes:
        check_member_name(member, zip_name)
        archive = self._zip(zip_name)
        try:
            return archive.read(member)
        except KeyError:
            raise FileNotFoundError(f"{self.raw_dir / zip_name}: member {member!r} missing") from None

    def close(self) -> None:
        for archive in getattr(self._local, "zips", {}).values():
            archive.close()
        self._local.zips = {}

    def gt_txt(self, split: str) -> tuple[str, str]:
        """(text, source name 'wider_face_split.zip:<member>') of the gt txt of `split`."""
        _check_split(split)
        member = GT_TXT_MEMBER[split]
        data = self._read(SPLIT_ZIP, member)
        return data.decode("utf-8-sig"), f"{SPLIT_ZIP}:{member}"

    def train_sources(self) -> dict[str, str]:
        """Train event -> source name for the events of extra sources ({} when there are none)."""
        archive = self._zip(SPLIT_ZIP)
        if TRAIN_SOURCES_MEMBER not in archive.namelist():
            return {}
        sources = json.loads(archive.read(TRAIN_SOURCES_MEMBER))
        return {name: name for name in sources["extra_train"]}

    def main_source(self) -> str:
        """The name the train split's own events are counted under ('main' when not recorded)."""
        archive = self._zip(SPLIT_ZIP)
        if TRAIN_SOURCES_MEMBER not in archive.namelist():
            return "main"
        return str(json.loads(archive.read(TRAIN_SOURCES_MEMBER))["main"])

    def records(self, split: str) -> list[WiderRecord]:
        """The parsed gt txt of `split`."""
        return parse_gt_txt(*self.gt_txt(split))

    def read_image(self, split: str, rel_path: str) -> bytes:
        """Encoded bytes of image 'event/name.jpg' of `split`."""
        _check_split(split)
        check_member_name(rel_path, IMAGES_ZIP[split])
        return self._read(IMAGES_ZIP[split], image_member(split, rel_path))

    def image_paths(self, split: str) -> list[str]:
        """Sorted 'event/name.jpg' paths of all images in WIDER_<split>.zip."""
        _check_split(split)
        prefix = f"WIDER_{split}/images/"
        return sorted(n[len(prefix):] for n in self._zip(IMAGES_ZIP[split]).namelist()
                      if n.startswith(prefix) and not n.endswith("/"))

    def eval_ground_truth(self) -> list[EvalImage]:
        """The official val ground truth read from eval_tools.zip (eval_tools/ground_truth/*.mat),
        parsed once per archive object (evaluate_tflite scores two models against it). Read-only."""
        if self._eval_ground_truth is None:
            archive = self._zip(EVAL_TOOLS_ZIP)
            members = eval_mat_members(archive, str(self.raw_dir / EVAL_TOOLS_ZIP))
            found = {name: archive.read(member) for name, member in members.items()}
            self._eval_ground_truth = read_eval_ground_truth(found)
        return self._eval_ground_truth


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
