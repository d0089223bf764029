"""WIDERFace gt txt annotations (`wider_face_split/wider_face_{train,val}_bbx_gt.txt`): the record
of one image, parsing and writing the files, and the two names an image goes by.

Boxes in this module are WIDER pixel boxes `x1, y1, w, h`. One block per image::

    0--Parade/0_Parade_marchingband_1_849.jpg
    1
    449 330 122 149 0 0 0 0 0 0      x1 y1 w h blur expression illumination invalid occlusion pose

An image with no faces has count `0` followed by one dummy line of ten zeros.

Image names: in this package an image is its path 'event/name.jpg' (the gt txt line, the member under
WIDER_<split>/images/, a tf.Example's source_id). The official evaluation names it 'event/name'
without the extension (the .mat `file_list`, a submission's '<event>/<name>.txt'): its *eval key*.
`eval_key` and `image_of_key` convert; nothing else spells either form out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val")
FACE_COLUMNS = ("x1", "y1", "w", "h", "blur", "expression", "illumination", "invalid", "occlusion", "pose")
ATTRIBUTE_COLUMNS = FACE_COLUMNS[4:]


class WiderFormatError(ValueError):
    """A WIDER annotation or archive is malformed; the message says `file:line: what, text`."""


def eval_key(image: str) -> str:
    """'event/name.jpg' -> 'event/name': the key of an image in the official evaluation and submissions."""
    return posixpath.splitext(image)[0]


def image_of_key(key: str) -> str:
    """'event/name' -> 'event/name.jpg': the .mat files and submissions drop the extension, and every
    WIDER image is a JPEG."""
    return f"{key}.jpg"


def is_image_path(line: str) -> bool:
    """Whether a (stripped) gt txt line is an image path 'event/name.jpg' (.jpg, .jpeg or .png)."""
    return line.lower().endswith((".jpg", ".jpeg", ".png")) and "/" in line


@dataclass
class WiderRecord:
    """One annotated image of a gt txt file.

    image: 'event/name.jpg' (path under WIDER_<split>/images/);
    gt_rows: int32 (N, 10) columns x1 y1 w h blur expression illumination invalid occlusion pose
    (pixel x1, y1, w, h boxes; N == 0 for a zero-face image, its dummy line is not a face).
    """

    image: str
    gt_rows: np.ndarray

    @property
    def event(self) -> str:
        return self.image.split("/", 1)[0]

    @property
    def key(self) -> str:
        """Its eval key 'event/name' (`eval_key`)."""
        return eval_key(self.image)

    @property
    def stem(self) -> str:
        """The file name without extension (the .mat `file_list` entry)."""
        return posixpath.basename(self.key)

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
        if not is_image_path(image):
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
        rows = np.zeros((count, 10), np.int32)
        for k in range(count):
            if i >= len(lines):
                raise fail(lineno, f"truncated file: {image} announces {count} faces, found {k}", image)
            face_no, face_text = lines[i]
            values = _face_values(face_text)
            if values is None:
                raise fail(face_no, f"face {k + 1} of {count} of {image}: expected 10 integers "
                           f"(count does not match the face lines?)", face_text)
            rows[k] = values
            i += 1
        if count == 0 and i < len(lines) and (dummy := _face_values(lines[i][1])) is not None:
            if any(dummy):  # a real face after a count of 0: the count is wrong
                raise fail(lines[i][0], f"{image} has face count 0 but a face line follows "
                           "(the zero-face dummy line is all zeros)", lines[i][1])
            i += 1  # the dummy line of a zero-face image
        records.append(WiderRecord(image=image, gt_rows=rows))
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
        rows = np.asarray(rec.gt_rows, np.int64).reshape(-1, 10)
        out.append(rec.image)
        out.append(str(len(rows)))
        if len(rows) == 0:
            out.append("0 0 0 0 0 0 0 0 0 0 ")
        for face in rows:
            out.append(" ".join(str(int(v)) for v in face) + " ")
    return "\n".join(out) + "\n"
