"""Time the official WIDER evaluation on a synthetic full-val-sized set (3,226 images, ~40k faces,
~40k detections, one crowd image of 709 faces) against the slow literal reference loop
(tests/wider_eval_reference.py), measured in the same run on a subset and extrapolated per image.

    python bench/wider_eval_speed.py [--images 3226] [--reference-images 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

from facedet.evaluate.wider_eval import evaluate_wider, match_predictions  # noqa: E402

from wider_eval_reference import reference_wider_eval, synthetic_val_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3226)
    parser.add_argument("--reference-images", type=int, default=100,
                        help="images scored by the slow reference (its time is extrapolated)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    gt, preds = synthetic_val_set(seed=0, images=args.images, crowd=709)
    faces = sum(len(img.boxes_xywh) for img in gt)
    dets = sum(len(p) for p in preds.values())
    print(f"synthetic set: {len(gt)} images, {faces} faces, {dets} detections")

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = evaluate_wider(gt, preds)
        times.append(time.perf_counter() - t0)
    fast = min(times)
    t0 = time.perf_counter()
    match_predictions(gt, preds)
    matching = time.perf_counter() - t0
    print(f"facedet.evaluate.wider_eval: {fast:.3f} s (best of {args.repeat}; matching {matching:.3f} s)  "
          + "  ".join(f"{k} {v:.4f}" for k, v in result.ap.items()))

    # the reference on a subset without the crowd image, extrapolated by detections x thresholds work
    sub = [img for img in gt[: args.reference_images + 1] if len(img.boxes_xywh) < 709][: args.reference_images]
    sub_preds = {img.key: preds[img.key] for img in sub if img.key in preds}
    t0 = time.perf_counter()
    reference_wider_eval(sub, sub_preds)
    ref_sub = time.perf_counter() - t0
    ref_full = ref_sub * len(gt) / len(sub)
    print(f"reference loop: {ref_sub:.2f} s on {len(sub)} images -> ~{ref_full:.0f} s for {len(gt)} images "
          f"(extrapolated per image)")
    print(f"speed-up: ~{ref_full / fast:.0f}x")
    check = evaluate_wider(sub, sub_preds)
    ref = reference_wider_eval(sub, sub_preds)
    same = all(ref[s][0] == check.subsets[s].ap for s in ref)
    print(f"subset APs identical to the reference: {same}")
    np.testing.assert_equal(same, True)


if __name__ == "__main__":
    main()
