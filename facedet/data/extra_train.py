"""Extra training sources (`data.extra_train`): a user's own faces as PASCAL VOC, COCO or another
WIDER-layout tree, added to the train split as events of their own.

Two steps, so that DVC sees each source's files as a dependency (dvc.yaml cannot list a variable
number of paths in one stage, but `foreach` makes one stage per source):
- the `extra_train@<name>` stage reads and checks one source (facedet.data.voc, facedet.data.coco_json,
  facedet.data.local_wider) and writes data/extra/<name>.zip: its images as members
  `WIDER_train/images/<name>/<file>` (stored), their faces as `wider_face_split/<name>_train_bbx_gt.txt`
  (WIDER gt rows, paths `<name>/<file>`) and `source.json` (counts, names, sha256 of every file read);
- fetch (`add_extra_train`) appends those members to data/raw's WIDER_train.zip and gt txt and records
  which events are which source in `wider_face_split/train_sources.json`, which the filter reads to count
  faces by source. It refuses an image that two sources both hold (same bytes), val images included.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facedet.data.annotations import AnnotationError, check_image_name, check_size, image_size, wider_row
from facedet.data.coco_json import read_coco
from facedet.data.local_wider import gt_line_numbers, locate, read_gt
from facedet.data.voc import read_voc, to_zero_based
from facedet.data.wider_archive import (
    GT_TXT_MEMBER,
    IMAGES_ZIP,
    SPLIT_DIR_MEMBER,
    SPLIT_ZIP,
    TRAIN_SOURCES_MEMBER,
    image_member,
)
from facedet.data.wider_gt import WiderRecord, format_gt_txt
from facedet.params.sections import ExtraSource
from facedet.process.hashing import sha256_of
from facedet.process.paths import EXTRA_DIR
from facedet.process.zips import stored_zip_writer, zip_bytes


@dataclass
class Indexed:
    """One source read and checked: WIDER records (paths '<file>' relative to its image root), bytes
    by path, and what source.json records."""

    records: list[WiderRecord] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)
    faces_by_name: Counter = field(default_factory=Counter)
    annotations: dict[str, str] = field(default_factory=dict)  # annotation file -> sha256
    extra: dict[str, Any] = field(default_factory=dict)


def _check_names(asked: list[str], found: set[str], key: str, where: str) -> set[str] | None:
    unknown = [n for n in asked if n not in found]
    if unknown:
        raise AnnotationError(f"{key}.names: {', '.join(map(repr, unknown))} not found in {where} "
                              f"(names there: {', '.join(sorted(found)) or 'none'})")
    return set(asked) if asked else None


def _read_image(path: Path, where: str) -> bytes:
    if not path.is_file():
        raise AnnotationError(f"{where}: image {path} not found")
    return path.read_bytes()


def index_voc(source: ExtraSource, key: str) -> Indexed:
    root = Path(source.path)
    if not root.is_dir():
        raise AnnotationError(f"{key}.path: {root} does not exist or is not a directory")
    vocs = read_voc(root)
    found = {o.name for v in vocs for o in v.objects}
    wanted = _check_names(source.names, found, key, f"{root}/Annotations")
    origin = source.pixel_origin
    if origin == "auto":
        origin = 0 if any(v.is_fractional_or_zero_based() for v in vocs) else 1
    out = Indexed(extra={"pixel_origin": origin})
    named: dict[str, Path] = {}
    for voc in vocs:
        where = f"{voc.xml}: annotation/filename"
        rel = check_image_name(voc.filename, where)
        if rel in named:
            raise AnnotationError(f"{where}: {rel} is also named by {named[rel]} (two annotations, one image)")
        named[rel] = voc.xml
        data = _read_image(root / "JPEGImages" / rel, where)
        size = image_size(data, f"{root / 'JPEGImages' / rel} (named by {voc.xml})")
        check_size(voc.size, size, f"{voc.xml}: annotation/size")
        rows = []
        for obj in voc.objects:
            if wanted is None or obj.name in wanted:
                rows.append(wider_row(*to_zero_based(obj.corners, origin), size, obj.where,
                                      invalid=obj.difficult, occlusion=obj.occluded))
                out.faces_by_name[obj.name] += 1
        out.records.append(WiderRecord(rel, np.asarray(rows, np.int32).reshape(-1, 10)))
        out.data[rel] = data
        out.annotations[voc.xml.relative_to(root).as_posix()] = sha256_of(voc.xml)
    return out


def index_coco(source: ExtraSource, key: str) -> Indexed:
    root = Path(source.path)
    if not root.is_dir():
        raise AnnotationError(f"{key}.path: {root} does not exist or is not a directory")
    ann_path = root / source.annotations
    if not ann_path.is_file():
        raise AnnotationError(f"{key}.annotations: {ann_path} not found")
    images, found = read_coco(ann_path)
    wanted = _check_names(source.names, found, key, f"{ann_path} categories")
    image_root = root / source.images
    out = Indexed(annotations={source.annotations: sha256_of(ann_path)})
    for image in images:
        rel = check_image_name(image.file_name, f"{image.where}.file_name")
        data = _read_image(image_root / rel, f"{image.where}.file_name")
        size = image_size(data, f"{image_root / rel} ({image.where})")
        check_size(image.size, size, f"{image.where}: width, height")
        rows = []
        for box in image.boxes:
            if wanted is None or box.category in wanted:
                x, y, w, h = box.xywh
                rows.append(wider_row(x, y, x + w, y + h, size, f"{box.where}.bbox", invalid=box.crowd))
                out.faces_by_name["iscrowd (ignored)" if box.crowd else box.category] += 1
        out.records.append(WiderRecord(rel, np.asarray(rows, np.int32).reshape(-1, 10)))
        out.data[rel] = data
    return out


def index_wider(source: ExtraSource, key: str) -> Indexed:
    tree = locate(source.path, splits=("train",), what=f"{key}.path")
    records, gt_source, gt_bytes = read_gt(tree, "train")
    lines = gt_line_numbers(gt_bytes.decode("utf-8-sig"))
    part = tree.images["train"]
    out = Indexed(annotations={gt_source.removeprefix(str(tree.root)).lstrip("/"): hashlib.sha256(gt_bytes).hexdigest()})
    archive = zipfile.ZipFile(part) if tree.is_archive(part) else None
    try:
        for rec in records:
            where = f"{gt_source}:{lines.get(rec.image, '?')}"
            if archive is not None:
                try:
                    data = archive.read(image_member("train", rec.image))
                except KeyError:
                    raise AnnotationError(f"{where}: image {rec.image} not in {part}") from None
            else:
                data = _read_image(part / rec.image, where)
            image_size(data, f"{rec.image} ({where})")
            out.records.append(rec)
            out.data[rec.image] = data
            out.faces_by_name["face"] += len(rec.gt_rows)
    finally:
        if archive is not None:
            archive.close()
    return out


INDEXERS: dict[str, Callable[[ExtraSource, str], Indexed]] = {"voc": index_voc, "coco": index_coco, "wider": index_wider}


def gt_member(name: str) -> str:
    return f"{SPLIT_DIR_MEMBER}/{name}_train_bbx_gt.txt"


def write_extra_index(name: str, source: ExtraSource, out: Path) -> dict[str, Any]:
    """Read and check source `name`, write its index zip to `out` (see the module docstring); returns
    its source.json. AnnotationError (one line) on bad input."""
    key = f"data.extra_train.{name}"
    indexed = INDEXERS[source.format](source, key)
    records = sorted((WiderRecord(f"{name}/{r.image}", r.gt_rows) for r in indexed.records), key=lambda r: r.image)
    digests = {}
    with stored_zip_writer(out) as add:
        for rec in records:
            data = indexed.data[rec.image.split("/", 1)[1]]
            add(image_member("train", rec.image), data)
            digests[rec.image] = hashlib.sha256(data).hexdigest()
        summary = {
            "format": source.format, "names": source.names or "all", "images": len(records),
            "faces": int(sum(len(r.gt_rows) for r in records)),
            "ignored": int(sum(int((r.gt_rows[:, 7] == 1).sum()) for r in records)),
            "faces_by_name": dict(sorted(indexed.faces_by_name.items())), "annotations": indexed.annotations,
            "image_sha256": digests, **indexed.extra,
        }
        add(gt_member(name), format_gt_txt(records).encode("utf-8"))
        add("source.json", (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return summary


def _member_hashes(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as archive:
        return {hashlib.sha256(archive.read(info)).hexdigest(): info.filename
                for info in archive.infolist() if not info.filename.endswith("/")}


def index_paths(names: list[str], extra_dir: str | Path = EXTRA_DIR) -> dict[str, Path]:
    """name -> data/extra/<name>.zip of each source; AnnotationError for one not indexed yet (checked
    before fetch builds the main source, which can take minutes)."""
    paths = {name: Path(extra_dir) / f"{name}.zip" for name in sorted(names)}
    for name, path in paths.items():
        if not path.is_file():
            raise AnnotationError(f"{path}: missing: the extra_train@{name} stage writes it (run dvc repro)")
    return paths


def add_extra_train(raw_dir: Path, names: list[str], main_source: str, extra_dir: str | Path = EXTRA_DIR,
                    report: Callable[[str], object] = lambda line: None) -> dict[str, Any]:
    """Append the indexed extra sources `names` (data/extra/<name>.zip) to the train split of the
    data/raw being built in `raw_dir`. Returns {name: source.json} for data/raw/sources.json.
    AnnotationError when an image is in two sources or a source name is a main train event."""
    seen: dict[str, tuple[str, str]] = {}  # sha256 -> (source, what to call the image); one source may hold
    for split in ("val", "train"):          # an image twice (real sets do), two sources may not
        for digest, member in _member_hashes(raw_dir / IMAGES_ZIP[split]).items():
            seen.setdefault(digest, (main_source, f"the {main_source} source's {member}"))
    with zipfile.ZipFile(raw_dir / SPLIT_ZIP) as split_zip:
        split_members = {i.filename: split_zip.read(i) for i in split_zip.infolist()}
    train_gt = split_members[GT_TXT_MEMBER["train"]].decode("utf-8-sig")
    main_events = {line.split("/", 1)[0] for line in train_gt.splitlines() if "/" in line}
    gt_parts = [train_gt if train_gt.endswith("\n") or not train_gt else train_gt + "\n"]
    summaries = {}
    with stored_zip_writer(raw_dir / IMAGES_ZIP["train"], mode="a") as add:
        for name, index in index_paths(names, extra_dir).items():
            if name in main_events:
                raise AnnotationError(f"data.extra_train.{name}: '{name}' is also an event of the {main_source} "
                                      "train split: give the source another name")
            with zipfile.ZipFile(index) as archive:
                summary = json.loads(archive.read("source.json"))
                for info in archive.infolist():
                    if not info.filename.startswith(image_member("train", "")):
                        continue
                    data = archive.read(info)
                    digest = hashlib.sha256(data).hexdigest()
                    here = f"extra source '{name}' image {info.filename.split('/', 3)[3]}"
                    if digest in seen and seen[digest][0] != name:
                        raise AnnotationError(f"{here} and {seen[digest][1]} are the same image (sha256 "
                                              f"{digest[:12]}...): two sources name the same image")
                    seen.setdefault(digest, (name, here))
                    add(info.filename, data)
                gt_parts.append(archive.read(gt_member(name)).decode("utf-8"))
            summaries[name] = summary
            report(f"extra source '{name}' ({summary['format']}): {summary['images']} images, {summary['faces']} faces "
                   f"({summary['ignored']} ignored regions) added to the train split as event '{name}'")
    split_members[GT_TXT_MEMBER["train"]] = "".join(gt_parts).encode("utf-8")
    split_members[TRAIN_SOURCES_MEMBER] = (json.dumps(
        {"main": main_source, "extra_train": {n: summaries[n]["format"] for n in sorted(summaries)}},
        indent=1, sort_keys=True) + "\n").encode("utf-8")
    data = zip_bytes(split_members, compress=True)
    (raw_dir / SPLIT_ZIP).unlink()  # it may be a hard link to the verified download: never write through it
    (raw_dir / SPLIT_ZIP).write_bytes(data)
    return summaries

