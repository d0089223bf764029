"""A WIDERFace copy already on disk (`data.source: local`, `data.local.path`), turned into data/raw
exactly as the download writes it (facedet.data.wider_fetch), so nothing downstream changes.

The path holds, per part, either the official archive or the same tree unpacked:

    WIDER_train.zip        or  WIDER_train/images/<event>/*.jpg
    WIDER_val.zip          or  WIDER_val/images/<event>/*.jpg
    wider_face_split.zip   or  wider_face_split/wider_face_{train,val}_bbx_gt.txt
    eval_tools.zip         or  eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat   (optional)

Archives whose sha256 is the published one (facedet.data.wider_fetch.PUBLISHED) are reported as official;
other files are used as they are, and the sha256 of every file read goes into data/raw/sources.json
(not the path: the same bytes elsewhere give the same data/raw). From a tree, fetch stores the images
the gt txt names (a missing one is an error naming the gt line) in the official member layout,
uncompressed, sorted. With no evaluation .mat files they are written from the val gt txt: the
official Easy/Medium/Hard lists come from EdgeBox detection rates, which the gt attributes do not
carry, so every valid face (invalid 0, w and h >= 1) counts in all three subsets, as the official
files ignore invalid faces in all three.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facedet.data.wider_archive import (
    EVAL_GT_DIR_MEMBER,
    EVAL_TOOLS_ZIP,
    GT_TXT_MEMBER,
    IMAGES_ZIP,
    SPLIT_DIR_MEMBER,
    SPLIT_ZIP,
    check_archive,
    eval_mat_members,
    image_member,
)
from facedet.data.wider_fetch import PUBLISHED, write_raw_archives
from facedet.data.wider_gt import SPLITS, WiderFormatError, WiderRecord, is_image_path, parse_gt_txt
from facedet.data.wider_mat import EVAL_MAT_FILES, eval_images_of, eval_mat_bytes, read_eval_ground_truth
from facedet.process.hashing import sha256_of
from facedet.process.zips import stored_zip_writer, zip_bytes

SOURCES_JSON = "sources.json"
GENERATED_SUBSETS_RULE = ("no evaluation .mat files: written from wider_face_val_bbx_gt.txt; every valid face "
                          "(invalid 0, w and h >= 1) counts in Easy, Medium and Hard (the official lists come from "
                          "EdgeBox detection rates, which the attributes do not carry)")


def every_valid_face(gt_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Subset membership when no official .mat files exist: every face with invalid 0 and w, h >= 1
    (int (N, 10) gt rows) counts in easy, medium and hard; 1-based indices."""
    gt_rows = np.asarray(gt_rows).reshape(-1, 10)
    keep = np.flatnonzero((gt_rows[:, 7] == 0) & (gt_rows[:, 2] >= 1) & (gt_rows[:, 3] >= 1)) + 1
    return {"easy": keep, "medium": keep, "hard": keep}


@dataclass
class WiderTree:
    """Where each part of a WIDER copy is: an archive path or an unpacked directory (None: absent)."""

    root: Path
    images: dict[str, Path]  # split -> WIDER_<split>.zip or WIDER_<split>/images
    split: Path  # wider_face_split.zip or wider_face_split/
    eval_gt: Path | None  # eval_tools.zip, eval_tools/ground_truth/ or None

    def is_archive(self, part: Path) -> bool:
        return part.suffix == ".zip"


def locate(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS, what: str = "data.local.path") -> WiderTree:
    """Find the parts of a WIDER copy under `root`; WiderFormatError (one line) when the path does not
    exist or a part is there in neither form."""
    root = Path(root)
    if not root.is_dir():
        raise WiderFormatError(f"{what}: {root} does not exist or is not a directory")
    images, missing = {}, []
    for split in splits:
        zipped, tree = root / IMAGES_ZIP[split], root / f"WIDER_{split}" / "images"
        if zipped.is_file() or tree.is_dir():
            images[split] = zipped if zipped.is_file() else tree
        else:
            missing.append(f"{IMAGES_ZIP[split]} or WIDER_{split}/images/")
    split_zip, split_dir = root / SPLIT_ZIP, root / "wider_face_split"
    gt_txts = [split_dir / Path(GT_TXT_MEMBER[s]).name for s in splits]
    if split_zip.is_file():
        split_part = split_zip
    elif all(p.is_file() for p in gt_txts):
        split_part = split_dir
    else:
        split_part = split_zip
        missing.append(f"{SPLIT_ZIP} or " + " and ".join(str(p.relative_to(root)) for p in gt_txts))
    if missing:
        raise WiderFormatError(f"{what}: {root} holds neither the official WIDERFace archives nor the unpacked "
                               f"tree: missing {'; '.join(missing)}")
    eval_zip, eval_dir = root / EVAL_TOOLS_ZIP, root / EVAL_GT_DIR_MEMBER
    eval_gt = eval_zip if eval_zip.is_file() else eval_dir if eval_dir.is_dir() else None
    return WiderTree(root, images, split_part, eval_gt)


def archive_status(path: Path, name: str) -> dict[str, Any]:
    """sha256 and size of an archive and whether it is the official one. An archive of the official
    size whose sha256 differs is a damaged copy: WiderFormatError."""
    digest, size = sha256_of(path), path.stat().st_size
    pin = PUBLISHED.get(name)
    official = pin is not None and digest == pin.sha256
    if pin is not None and not official and size == pin.size:
        raise WiderFormatError(f"{path}: the size of the official {name} but another sha256 "
                               f"({digest[:12]}...): a damaged copy? download it again")
    check_archive(path, name)
    return {"sha256": digest, "bytes": size, "official": official}


def read_gt(tree: WiderTree, split: str) -> tuple[list[WiderRecord], str, bytes]:
    """(records, source name, raw bytes) of the gt txt of `split`, from the archive or the tree."""
    if tree.is_archive(tree.split):
        with zipfile.ZipFile(tree.split) as archive:
            data = archive.read(GT_TXT_MEMBER[split])
        source = f"{tree.split}:{GT_TXT_MEMBER[split]}"
    else:
        path = tree.split / Path(GT_TXT_MEMBER[split]).name
        data, source = path.read_bytes(), str(path)
    return parse_gt_txt(data.decode("utf-8-sig"), source), source, data


def gt_line_numbers(text: str) -> dict[str, int]:
    """Image path -> its line number in a gt txt (for errors naming the line)."""
    return {s: n for n, raw in enumerate(text.splitlines(), start=1) if is_image_path(s := raw.strip())}


def image_files(tree: WiderTree, split: str, records: list[WiderRecord], gt_source: str, gt_text: str) -> dict[str, Path]:
    """'event/name.jpg' -> file of every image the gt txt of `split` names, from an unpacked tree.
    WiderFormatError naming the gt line for an image that is not there."""
    lines = gt_line_numbers(gt_text)
    found = {}
    for rec in records:
        path = tree.images[split] / rec.image
        if not path.is_file():
            raise WiderFormatError(f"{gt_source}:{lines.get(rec.image, '?')}: image {rec.image} not found "
                                   f"(looked for {path})")
        found[rec.image] = path
    return found


def write_images_zip(files: dict[str, Path], split: str, out: Path, progress: Callable[[int], object] | None = None
                     ) -> dict[str, str]:
    """WIDER_<split>.zip of `files` ('event/name.jpg' -> path): official member names, stored,
    sorted, fixed metadata. Returns member name -> sha256 of its bytes."""
    digests = {}
    with stored_zip_writer(out) as add:
        for rel in sorted(files):
            data = files[rel].read_bytes()
            add(image_member(split, rel), data)
            digests[image_member(split, rel)] = hashlib.sha256(data).hexdigest()
            if progress:
                progress(1)
    return digests


def read_eval_mats(tree: WiderTree) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The four .mat files (name -> bytes) of a copy that has them, checked to be readable, and what
    to record about them (sha256 each, official or not)."""
    assert tree.eval_gt is not None
    if tree.is_archive(tree.eval_gt):
        check_archive(tree.eval_gt, EVAL_TOOLS_ZIP)
        with zipfile.ZipFile(tree.eval_gt) as archive:
            mats = {name: archive.read(member) for name, member in eval_mat_members(archive, str(tree.eval_gt)).items()}
    else:
        missing = [n for n in EVAL_MAT_FILES.values() if not (tree.eval_gt / n).is_file()]
        if missing:
            raise WiderFormatError(f"{tree.eval_gt}: {', '.join(missing)} missing (give all four .mat files or none)")
        mats = {name: (tree.eval_gt / name).read_bytes() for name in EVAL_MAT_FILES.values()}
    read_eval_ground_truth(mats)
    record = {}
    for name, data in mats.items():
        digest = hashlib.sha256(data).hexdigest()
        record[name] = {"sha256": digest, "official": PUBLISHED[name].sha256 == digest}
    return mats, record


def write_local_wider(root: str | os.PathLike, raw_dir: Path, progress: bool = True,
                      report: Callable[[str], object] = lambda line: None) -> dict[str, Any]:
    """Build the four official zips of data/raw in `raw_dir` from the WIDER copy at `root` (see the module
    docstring). Returns what data/raw/sources.json records about the copy (no paths)."""
    from tqdm import tqdm

    tree = locate(root)
    files: dict[str, Any] = {}
    archives: dict[str, Path] = {}
    gts = {split: read_gt(tree, split) for split in SPLITS}
    for split in SPLITS:
        part = tree.images[split]
        if tree.is_archive(part):
            archives[part.name] = part
            files[part.name] = archive_status(part, part.name)
            continue
        records, source, data = gts[split]
        found = image_files(tree, split, records, source, data.decode("utf-8-sig"))
        with tqdm(total=len(found), desc=f"fetch: storing WIDER_{split}/images", unit="img",
                  disable=not progress, leave=False) as bar:
            digests = write_images_zip(found, split, raw_dir / IMAGES_ZIP[split], bar.update)
        files[f"WIDER_{split}/images"] = {"images": len(digests), "sha256": digests}
        report(f"WIDER_{split}/images/: {len(digests)} images, stored as {IMAGES_ZIP[split]}")
    if tree.is_archive(tree.split):
        archives[SPLIT_ZIP] = tree.split
        files[SPLIT_ZIP] = archive_status(tree.split, SPLIT_ZIP)
    else:
        members = {f"{SPLIT_DIR_MEMBER}/{p.name}": p.read_bytes() for p in sorted(tree.split.iterdir())
                   if p.is_file() and not p.name.startswith(".")}
        (raw_dir / SPLIT_ZIP).write_bytes(zip_bytes(members, compress=True))
        files["wider_face_split"] = {name: {"sha256": hashlib.sha256(data).hexdigest()} for name, data in members.items()}
        report(f"{SPLIT_DIR_MEMBER}/: {len(members)} files, stored as {SPLIT_ZIP}")
    if tree.eval_gt is not None:
        mats, files["eval_ground_truth"] = read_eval_mats(tree)
        official = all(v["official"] for v in files["eval_ground_truth"].values())
        report(f"evaluation ground truth: {tree.eval_gt.relative_to(tree.root)} "
               f"({'the official .mat files' if official else 'not the official .mat files: their sha256 are recorded'})")
    else:
        records = gts["val"][0]
        mats = eval_mat_bytes(*eval_images_of(records, every_valid_face))
        files["eval_ground_truth"] = {"generated": GENERATED_SUBSETS_RULE}
        report(f"evaluation ground truth: {GENERATED_SUBSETS_RULE}")
    write_raw_archives(raw_dir, archives, mats, progress)
    for name, status in files.items():
        if isinstance(status, dict) and "official" in status and name.endswith(".zip"):
            report(f"{name}: " + ("the official archive (sha256 matches the published one)" if status["official"]
                                  else f"not the official archive; sha256 {status['sha256']} recorded"))
    def rel(part: Path | None) -> str | None:
        return part.relative_to(tree.root).as_posix() if part else None

    return {"layout": {"images": {s: rel(tree.images[s]) for s in SPLITS}, "split": rel(tree.split),
                       "eval_ground_truth": rel(tree.eval_gt)},
            "files": files}
