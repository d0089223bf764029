"""Full decode check: an image reaches a shard only if it decodes completely and cleanly, with the
decoder training uses.

Training decodes the stored bytes with `tf.io.decode_jpeg(data, channels=3)` (facedet.train.input). libjpeg
raises on some damage (a file cut short, a garbled scan) but only *warns* on other damage: a JPEG cut
mid-scan and closed with an end-of-image marker decodes "fine" into a half-grey image, libjpeg having
printed 'Corrupt JPEG data: premature end of data segment' on stderr and TensorFlow raising nothing.
So `decode_problem` runs that same op with file descriptor 2 (where libjpeg prints) captured, and an
error or a warning line both make the image unusable. Images the shard stage re-encodes (CMYK JPEGs,
PNGs...) must in addition load fully in Pillow, the decoder the shard stage uses for them.

TensorFlow is imported only by `decode_problem`'s first call: the filter stage runs the check in
worker processes (`filtering.inspect_images`), so the stage's own process never starts TensorFlow.
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile

JPEG_EOI = b"\xff\xd9"
# libjpeg warnings that say nothing about the pixels (header oddities); every other one drops the image
HARMLESS_WARNINGS = ("Warning: unknown JFIF revision number", "Corrupt JPEG data: bad ICC marker")
LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+\] ")  # TF's C++ log line header


class _StderrCapture:
    """Captures what native code writes on file descriptor 2 around one call (libjpeg's warnings)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()

    def run(self, function, *args):
        """-> (function(*args) or the exception it raised, the text written on fd 2 meanwhile)."""
        sys.stderr.flush()
        self._file.seek(0)
        self._file.truncate()
        saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        try:
            try:
                result = function(*args)
            except Exception as err:  # noqa: BLE001 - TF raises several types for a broken image
                result = err
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        self._file.seek(0)
        return result, self._file.read().decode("utf-8", "replace")


_capture: _StderrCapture | None = None


def _tf_decode(data: bytes):
    import tensorflow as tf

    return tf.io.decode_jpeg(data, channels=3)  # exactly as facedet.train.input.decode_example


def _start() -> _StderrCapture:
    """Import TensorFlow and run one decode with its start-up log lines discarded."""
    global _capture
    if _capture is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        capture = _StderrCapture()
        from PIL import Image

        tiny = io.BytesIO()
        Image.new("RGB", (8, 8)).save(tiny, format="JPEG")
        capture.run(_tf_decode, tiny.getvalue())
        _capture = capture
    return _capture


def decode_problem(data: bytes, fmt: str, reencoded: bool) -> tuple[str, str]:
    """('', '') if the image decodes fully and cleanly as training will decode it, else
    (reason, detail): reason 'truncated' (a JPEG without its end-of-image marker, or a file Pillow
    finds cut short) or 'corrupt' (anything else the decoder raised or warned about); detail is the
    decoder's first line. fmt: Pillow's format ('JPEG', 'PNG', ...); reencoded: the shard stage
    re-encodes this image with Pillow (CMYK, not a JPEG)."""
    if fmt == "JPEG":
        result, printed = _start().run(_tf_decode, data)
        lines = (LOG_PREFIX.sub("", line).strip() for line in printed.splitlines())
        warnings = [line for line in lines if line and not line.startswith(HARMLESS_WARNINGS)]
        if isinstance(result, Exception) or warnings:
            detail = (warnings[0] if warnings else str(result).strip().splitlines()[-1]).strip()
            cut = not data.rstrip(b"\0").endswith(JPEG_EOI)
            return ("truncated" if cut else "corrupt"), detail[:200]
    if reencoded or fmt != "JPEG":
        from facedet.data.images import ImageError, open_image

        try:
            with open_image(data) as img:
                img.load()
        except ImageError as err:
            detail = err.detail or str(err)
            return ("truncated" if "truncated" in detail else "corrupt"), detail[:200]
    return "", ""
