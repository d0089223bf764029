"""Opening an image file as a person sees it: the one place that applies EXIF orientation, converts
pixel modes to RGB and holds the size limits. Training data (filter, shard), the evaluation, int8
calibration (it reads the shards) and `facedet detect` all read images through here.

- **Orientation**: a phone stores a portrait photo as landscape pixels with EXIF tag 274
  (Orientation) = 6 ("turn 90 degrees clockwise to view"). Every viewer and labelling tool shows it
  turned, so annotations are made in that *displayed* frame. Sizes given here (`ImageHeader.width`,
  `height`) are displayed sizes, and decoded pixels are displayed pixels (`ImageOps.exif_transpose`).
  An orientation outside 1-8 is ignored, as Pillow ignores it.
- **Modes**: RGB, grayscale, CMYK, YCbCr, palette and 1-bit become RGB; transparent pixels are laid
  on grey `TRANSPARENT_BACKGROUND` (the colour training pads with); 16-bit grayscale (PNG: Pillow
  mode I;16, or I) keeps its top 8 bits (Pillow's own conversion clips it, reading most photos as
  white). Other modes (F: float pixels, LAB, HSV, multi-band TIFF kinds) are refused by name.
- **Limits**: an image whose header promises more than `MAX_PIXELS` is refused (a decompression
  bomb: a 175 KB PNG can claim 180 megapixels), as is one that must be decoded in full (every format
  but JPEG) above `MAX_FULL_DECODE_PIXELS`. A JPEG is decoded scaled down by the decoder itself
  (1/2, 1/4, 1/8) when a smaller size is asked for (`read_photo`), so a 100-megapixel photo costs what
  a 6-megapixel one does. Pillow's own bomb check (a warning past 89 MP, an error past 179 MP) is
  replaced by these, so no raw Pillow warning reaches the user.

Every failure is an `ImageError`: one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112  # EXIF 274
TRANSPOSED = (5, 6, 7, 8)  # orientations whose displayed width is the stored height
MAX_PIXELS = 200_000_000  # above any camera's photo (a 200 MP phone sensor: 16,320 x 12,240 = 199.8 MP)
MAX_FULL_DECODE_PIXELS = 50_000_000  # formats without scaled decoding (PNG, BMP, WebP): 150 MB as RGB
DETECT_MAX_SIDE = 4096  # `facedet detect` reads larger photos scaled down to this (its models run at <= 1024)
TRANSPARENT_BACKGROUND = (128, 128, 128, 255)  # what transparent pixels become
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grayscale as Pillow opens it
CONVERTIBLE_MODES = ("RGB", "L", "CMYK", "YCbCr", "RGBA", "LA", "P", "PA", "1", "RGBa", "La", *SIXTEEN_BIT_MODES)


class ImageError(ValueError):
    """An image that cannot be used; the message is one line naming the file, `detail` the decoder's
    own words (if a decoder failed)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: `width` x `height` as displayed (EXIF orientation applied),
    Pillow's `mode` and `format` ('JPEG', 'PNG', ...), and its EXIF `orientation` (1: as stored)."""

    width: int
    height: int
    mode: str
    format: str
    orientation: int = 1


@dataclass(frozen=True)
class Photo:
    """A decoded photo: `pixels` uint8 (h, w, 3) RGB as displayed, possibly scaled down by `scale`
    (pixels' size / full size) from its full displayed size `width` x `height`."""

    pixels: np.ndarray
    width: int
    height: int
    scale: float = 1.0


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def check_pixels(width: int, height: int, fmt: str, name: str) -> None:
    """ImageError when an image of `width` x `height` px in format `fmt` is over the limits above."""
    pixels = width * height
    limit = MAX_PIXELS if fmt.upper() == "JPEG" else min(MAX_PIXELS, MAX_FULL_DECODE_PIXELS)
    if pixels > limit:
        which = "MAX_PIXELS" if limit == MAX_PIXELS else "MAX_FULL_DECODE_PIXELS"
        why = (f"{width}x{height} px ({pixels / 1e6:.1f} megapixels) {fmt or 'image'} is over the {limit / 1e6:.0f} "
               f"megapixels this project decodes (facedet.data.images.{which}): a decompression bomb, or a photo "
               "to scale down first")
        raise ImageError(f"{name}: {why}", why)


@contextlib.contextmanager
def open_image(source: bytes | str | os.PathLike, name: str | None = None) -> Iterator[Image.Image]:
    """Pillow's image of encoded bytes or a file, its size checked against the limits (before any
    pixel is decoded). Every error inside the block, Pillow's or a decoder's, becomes an ImageError
    naming `name` (default: the path)."""
    name = name or str(source if not isinstance(source, bytes) else "image")
    try:
        saved = Image.MAX_IMAGE_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # ours instead: check_pixels
            try:
                img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with img:
            check_pixels(img.width, img.height, img.format or "", name)
            yield img
    except ImageError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for a broken file
        raise ImageError(f"{name}: cannot read image ({_one_line(err)})", str(err).strip()) from None


def orientation(img: Image.Image) -> int:
    """The EXIF orientation of an open image, 1-8 (1, as stored, when absent or invalid)."""
    value = img.getexif().get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def read_header(data: bytes, name: str) -> ImageHeader:
    """The header of encoded image bytes, its structure verified (`Image.verify`, no full decode):
    the displayed size, mode, format and EXIF orientation. ImageError naming `name` if unusable."""
    with open_image(data, name) as img:
        width, height, mode, fmt = img.width, img.height, img.mode, img.format or ""
        img.verify()
    with open_image(data, name) as img:  # verify() leaves the image unusable; EXIF may sit past the pixels (PNG)
        turn = orientation(img)
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: cannot read image (size {width}x{height})", f"size {width}x{height}")
    if turn in TRANSPOSED:
        width, height = height, width
    return ImageHeader(int(width), int(height), mode, fmt, turn)


def to_rgb(img: Image.Image, name: str) -> Image.Image:
    """An RGB image of `img` (see the module docstring for each mode); ImageError for a mode that
    cannot be shown as RGB."""
    if img.mode == "RGB":
        return img
    if img.mode not in CONVERTIBLE_MODES:
        raise ImageError(f"{name}: pixel mode {img.mode} cannot be read as RGB (supported: "
                         f"{', '.join(CONVERTIBLE_MODES)})")
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.int64)
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, TRANSPARENT_BACKGROUND), rgba)
    return img.convert("RGB")


def upright(img: Image.Image) -> Image.Image:
    """`img` turned as its EXIF orientation says (itself when already upright)."""
    return ImageOps.exif_transpose(img) if orientation(img) != 1 else img


def decode_rgb(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> uint8 (H, W, 3) RGB as displayed (EXIF orientation applied)."""
    with open_image(data, name) as img:
        return np.asarray(to_rgb(upright(img), name))


def read_photo(path: str | os.PathLike, max_side: int = DETECT_MAX_SIDE) -> Photo:
    """A photo file as displayed, its longer side at most `max_side` px (a larger one is scaled down:
    a JPEG by its decoder, then every format by area averaging). ImageError (one line naming the
    file) for a broken link, an unreadable or refused image."""
    path = Path(path)
    if path.is_symlink():
        try:
            path.stat()
        except OSError as err:
            why = "a symbolic link loop" if err.errno == errno.ELOOP else "a broken symbolic link"
            raise ImageError(f"{path}: {why} (-> {os.readlink(path)}), skipped") from None
    with open_image(path) as img:
        turn = orientation(img)
        width, height = (img.height, img.width) if turn in TRANSPOSED else img.size
        scale = min(1.0, max_side / max(width, height))
        if scale < 1.0:
            target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))  # stored frame
            img.draft("RGB", target)  # JPEG only: decode at 1/2, 1/4 or 1/8 size, never below target
        img = to_rgb(upright(img), str(path))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            img = img.resize(size, Image.Resampling.BOX)
        pixels = np.asarray(img)
    return Photo(pixels, width, height, pixels.shape[1] / width)
