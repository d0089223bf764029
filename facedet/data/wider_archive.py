"""The four official WIDERFace zips as data/raw holds them: their names and member layout, checking
them, reading annotations and images straight from them (no unpacking), and writing zips like them
deterministically (fixed dates and permissions, safe member names) so data/raw is byte-identical.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from facedet.data.wider_gt import SPLITS, WiderFormatError, WiderRecord, parse_gt_txt
from facedet.data.wider_mat import EVAL_MAT_FILES, EvalImage, read_eval_ground_truth

# official archive names and member layout
IMAGES_ZIP = {"train": "WIDER_train.zip", "val": "WIDER_val.zip"}
SPLIT_ZIP = "wider_face_split.zip"
EVAL_TOOLS_ZIP = "eval_tools.zip"
SPLIT_DIR_MEMBER = "wider_face_split"  # the folder of wider_face_split.zip's members
GT_TXT_MEMBER = {s: f"{SPLIT_DIR_MEMBER}/wider_face_{s}_bbx_gt.txt" for s in SPLITS}
EVAL_GT_DIR_MEMBER = "eval_tools/ground_truth"
# present when extra sources joined the train split (facedet.data.extra_train): which events are which source
TRAIN_SOURCES_MEMBER = f"{SPLIT_DIR_MEMBER}/train_sources.json"


def image_member(split: str, rel_path: str) -> str:
    """Zip member name of image 'event/name.jpg' of `split` ('WIDER_<split>/images/...')."""
    return f"WIDER_{split}/images/{rel_path}"


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
        prefix = image_member(split, "")
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
