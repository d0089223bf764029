"""Why the runtime resizes with OpenCV: the bilinear resize of a photo to the letterboxed model input
(the photo's part of it) by each library installed, timed on the same photos in one run, and how far
each lands from `tf.image.resize` (float, what training uses).

    python bench/resize_speed.py [--photos ../shared/realfaces/widerface/WIDER_val/images] [--count 5]
                                 [--sides 256 640 1024] [--runs 15]

Candidates (all bilinear, half-pixel centres, no antialiasing, uint8 out):
- OpenCV: `cv2.resize(INTER_LINEAR)` (fixed-point weights), what facedet.runtime.photo_fit uses, 1 thread;
- PIL: `Image.resize(BILINEAR, reducing_gap=None)` (PIL's bilinear filter widens when it shrinks:
  it antialiases, so its numbers differ most);
- tf.image: `tf.image.resize` then rounded, the reference itself.
Photos: the first `--count` photos (<event>/<name>.jpg, sorted), else 1024x768 noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_PHOTOS = ROOT.parent / "shared" / "realfaces" / "widerface" / "WIDER_val" / "images"


def photos(folder: Path, count: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(folder.glob("*/*.jpg"))[:count] if folder.is_dir() else []
    if not files:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (768, 1024, 3)).astype(np.uint8) for _ in range(count)]
    out = []
    for path in files:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB")))
    return out


def resizers() -> dict:
    """name -> f(photo uint8 (H, W, 3), (height, width)) -> uint8 (height, width, 3)."""
    import cv2
    import tensorflow as tf
    from PIL import Image

    cv2.setNumThreads(1)
    return {
        "OpenCV cv2.resize INTER_LINEAR": lambda im, hw: cv2.resize(im, hw[::-1], interpolation=cv2.INTER_LINEAR),
        "PIL Image.resize BILINEAR": lambda im, hw: np.asarray(
            Image.fromarray(im).resize(hw[::-1], Image.BILINEAR, reducing_gap=None)),
        "tf.image.resize (rounded)": lambda im, hw: tf.cast(tf.round(tf.image.resize(im, hw)), tf.uint8).numpy(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="a folder of <event>/<name>.jpg")
    parser.add_argument("--count", type=int, default=5, help="photos (default 5)")
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 640, 1024], help="model input sides")
    parser.add_argument("--runs", type=int, default=15, help="timed calls per photo, side and library")
    args = parser.parse_args(argv)

    import tensorflow as tf

    images = photos(args.photos, args.count)
    funcs = resizers()
    print(f"{len(images)} photos, 1 thread; median ms per resize to the letterboxed photo area; "
          "grey levels off tf.image.resize: max, mean")
    print("| side | library | ms | max | mean |")
    print("|---|---|---|---|---|")
    for side in args.sides:
        times = {name: [] for name in funcs}
        errors = {name: [] for name in funcs}
        for image in images:
            ratio = min(side / image.shape[0], side / image.shape[1])
            inner = (max(1, round(image.shape[0] * ratio)), max(1, round(image.shape[1] * ratio)))
            reference = np.rint(tf.image.resize(image, inner).numpy()).astype(int)
            for _ in range(args.runs):  # interleaved: a busy spell hits every library alike
                for name, func in funcs.items():
                    started = time.perf_counter()
                    func(image, inner)
                    times[name].append((time.perf_counter() - started) * 1000)
            for name, func in funcs.items():
                errors[name].append(np.abs(func(image, inner).astype(int) - reference))
        for name in funcs:
            print(f"| {side} | {name} | {statistics.median(times[name]):.2f} | "
                  f"{max(int(e.max()) for e in errors[name])} | {np.mean([e.mean() for e in errors[name]]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
