"""PASCAL VOC face annotations: `Annotations/<id>.xml` beside `JPEGImages/<filename>`, as labelling tools
export them (`annotation/filename`, `annotation/size/{width,height}`, one `object` per box with `name`,
`difficult`, `occluded`, `bndbox/{xmin,ymin,xmax,ymax}`).

Coordinates: the VOC devkit's rule is 1-based pixel corners, both inclusive (a box `xmin 1 .. xmax W`
covers the whole width), i.e. continuous 0-based `[xmin - 1, xmax]`. Many exporters write 0-based values
or floats, i.e. `[xmin, xmax]`. `pixel_origin: auto` takes a source as 1-based unless one of its boxes
has a 0 corner or a fractional value (which 1-based integer corners cannot have); `1` or `0` forces it.
`difficult` objects become ignored regions (WIDER's invalid flag), `occluded` ones occlusion 1.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from facedet.data.annotations import AnnotationError

CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocObject:
    """One `object`: its name, flags and raw corners as written (x_min, y_min, x_max, y_max)."""

    name: str
    corners: tuple[float, float, float, float]
    difficult: bool
    occluded: bool
    where: str  # '<file>: object[k]' for errors


@dataclass(frozen=True)
class VocImage:
    """One annotation file: the image it names, the size it claims (None if absent or 0) and its objects."""

    xml: Path
    filename: str
    size: tuple[int, int] | None
    objects: list[VocObject]

    def is_fractional_or_zero_based(self) -> bool:
        return any(v == 0 or v != int(v) for o in self.objects for v in o.corners[:2]) or \
            any(v != int(v) for o in self.objects for v in o.corners[2:])


def _text(node: ET.Element, path: str, where: str, required: bool = True) -> str | None:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        if required:
            raise AnnotationError(f"{where}/{path}: element missing or empty")
        return None
    return found.text.strip()


def _number(node: ET.Element, path: str, where: str) -> float:
    text = _text(node, path, where)
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{where}/{path}: not a number, got {text!r}") from None


def _flag(node: ET.Element, path: str, where: str) -> bool:
    text = _text(node, path, where, required=False)
    if text is None:
        return False
    if text not in ("0", "1"):
        raise AnnotationError(f"{where}/{path}: expected 0 or 1, got {text!r}")
    return text == "1"


def parse_voc_xml(path: Path) -> VocImage:
    """Read one VOC annotation file. AnnotationError naming the file and line (malformed XML) or the
    element (missing, empty or non-numeric values)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line = err.position[0] if getattr(err, "position", None) else "?"
        raise AnnotationError(f"{path}:{line}: malformed XML ({err})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: <{root.tag}>: expected the root element <annotation>")
    filename = _text(root, "filename", f"{path}: annotation", required=False) or f"{path.stem}.jpg"
    size = None
    if root.find("size") is not None:
        width = _text(root, "size/width", f"{path}: annotation", required=False)
        height = _text(root, "size/height", f"{path}: annotation", required=False)
        if width and height:
            w, h = _number(root, "size/width", f"{path}: annotation"), _number(root, "size/height", f"{path}: annotation")
            size = (int(w), int(h)) if w > 0 and h > 0 else None
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object[{k}]"
        name = _text(obj, "name", where)
        if obj.find("bndbox") is None:
            raise AnnotationError(f"{where}/bndbox: element missing")
        corners = tuple(_number(obj, f"bndbox/{c}", where) for c in CORNERS)
        objects.append(VocObject(name, corners, _flag(obj, "difficult", where), _flag(obj, "occluded", where),
                                 f"{where} ({name})"))
    return VocImage(path, filename, size, objects)


def read_voc(root: Path) -> list[VocImage]:
    """Every `Annotations/*.xml` under a VOC tree `root`, sorted by file name."""
    annotations = root / "Annotations"
    if not (annotations.is_dir() and (root / "JPEGImages").is_dir()):
        raise AnnotationError(f"{root}: not a PASCAL VOC tree (expected Annotations/ and JPEGImages/)")
    return [parse_voc_xml(p) for p in sorted(annotations.glob("*.xml"))]


def to_zero_based(corners: tuple[float, float, float, float], origin: int) -> tuple[float, float, float, float]:
    """Continuous 0-based corners of a VOC box written with pixel origin 1 (devkit) or 0."""
    x1, y1, x2, y2 = corners
    return (x1 - 1, y1 - 1, x2, y2) if origin == 1 else (x1, y1, x2, y2)
