"""The four official WIDERFace zips as data/raw holds them: their names and member layout, checking
them, and reading annotations and images straight from them (no unpacking). They are written with
facedet.process.zips (fixed dates and permissions, safe member names), so data/raw is byte-identical.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
import zipfile
from pathlib import Path
from typing import Any

from facedet.data.wider_gt import SPLITS, WiderFormatError, WiderRecord, parse_gt_txt
from facedet.data.wider_mat import EVAL_MAT_FILES, EvalImage, read_eval_ground_truth
from facedet.process.zips import check_member_name

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
    Raises WiderFormatError, UnsafeMemberError or FileNotFoundError naming the file."""
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
