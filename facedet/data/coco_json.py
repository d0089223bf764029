"""COCO instances JSON as a face source: `images[{id, file_name, width, height}]`,
`annotations[{image_id, category_id, bbox: [x, y, w, h], iscrowd}]`, `categories[{id, name}]`.

Boxes are continuous 0-based pixels (top-left x, y, then width, height, floats). `iscrowd: 1` boxes
are ignored regions, not faces to find (WIDER's invalid flag; see facedet.data.annotations). Errors name
the file and the JSON index (`annotations[17].bbox`).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facedet.data.annotations import AnnotationError


@dataclass
class CocoBox:
    category: str
    xywh: tuple[float, float, float, float]
    crowd: bool
    where: str  # '<file>: annotations[k]'


@dataclass
class CocoImage:
    file_name: str
    size: tuple[int, int] | None
    where: str  # '<file>: images[k]'
    boxes: list[CocoBox] = field(default_factory=list)


def _get(item: Any, key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if not isinstance(item, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(item).__name__}")
    if key not in item:
        if default is not ...:
            return default
        raise AnnotationError(f"{where}: '{key}' missing")
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise AnnotationError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def read_coco(path: Path) -> tuple[list[CocoImage], set[str]]:
    """The images of a COCO instances file with their boxes (file order), and every category name in it.
    AnnotationError naming the file and line (malformed JSON) or the JSON index."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: malformed JSON ({err.msg}, column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except RecursionError:  # Python's JSON reader recurses once per nesting level
        raise AnnotationError(f"{path}: JSON nested too deeply to read (more than about "
                              f"{sys.getrecursionlimit()} levels; a COCO file has 4)") from None
    where = str(path)
    for key in ("images", "annotations", "categories"):
        _get(data, key, list, where)
    categories: dict[int, str] = {}
    for k, cat in enumerate(data["categories"]):
        at = f"{path}: categories[{k}]"
        cid, name = _get(cat, "id", int, at), _get(cat, "name", str, at)
        if cid in categories:
            raise AnnotationError(f"{at}: category id {cid} given twice")
        categories[cid] = name
    images: dict[int, CocoImage] = {}
    names: dict[str, str] = {}
    for k, img in enumerate(data["images"]):
        at = f"{path}: images[{k}]"
        iid, file_name = _get(img, "id", int, at), _get(img, "file_name", str, at)
        width, height = _get(img, "width", (int, float), at, None), _get(img, "height", (int, float), at, None)
        if iid in images:
            raise AnnotationError(f"{at}: image id {iid} given twice (first at {images[iid].where})")
        if file_name in names:
            raise AnnotationError(f"{at}: file_name {file_name!r} named twice (first at {names[file_name]})")
        names[file_name] = at
        size = (int(width), int(height)) if width and height else None
        images[iid] = CocoImage(file_name, size, at)
    for k, ann in enumerate(data["annotations"]):
        at = f"{path}: annotations[{k}]"
        iid, cid = _get(ann, "image_id", int, at), _get(ann, "category_id", int, at)
        bbox = _get(ann, "bbox", list, at)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in bbox):
            raise AnnotationError(f"{at}.bbox: expected [x, y, w, h] numbers, got {bbox!r}")
        if iid not in images:
            raise AnnotationError(f"{at}.image_id: no image has id {iid}")
        if cid not in categories:
            raise AnnotationError(f"{at}.category_id: no category has id {cid}")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise AnnotationError(f"{at}.iscrowd: expected 0 or 1, got {crowd!r}")
        images[iid].boxes.append(CocoBox(categories[cid], tuple(float(v) for v in bbox), bool(crowd), at))
    return list(images.values()), set(categories.values())
