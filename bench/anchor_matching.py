"""What the detector is asked to learn: training examples drawn exactly as the train stage draws
them (same augmentation), and per face size at the model input, how many faces there are, how many
have an anchor at IoU >= `positive_iou` (the rest get only their best anchor, forced: a weak
target), and the positive anchors per face. Two recipes side by side, in the same run: the default
(the whole photo squashed to the input) and the real-faces one (native-scale crops, its preset).

    python bench/anchor_matching.py [--tfrecords data/tfrecords] [--images 400]

Reads data/tfrecords/train.record-* (run the shard stage on real photos first).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BINS = (0, 4, 8, 16, 32, 64, 128, 100_000)  # face size (longer side) at the model input, px
RECIPES = {  # name: (preset, train.augment overrides, positive_iou, negative_iou)
    "default: whole photo at 256": ("ssd_mobilenet_v2_256", {}, 0.5, 0.4),
    "real faces: native-scale crops": ("ssd_mobilenet_v2_native_256", {"scale_crop": 1.0}, 0.35, 0.3),
}


def match_stats(preset: str, augment: dict, positive_iou: float, negative_iou: float, files: list[str],
                images: int) -> dict[int, list[int]]:
    """Per size bin: [faces, faces with an anchor at IoU >= positive_iou, positive anchors]."""
    import numpy as np
    import tensorflow as tf

    from facedet.model.anchors import anchor_boxes
    from facedet.model.config import load_preset
    from facedet.model.boxes import pairwise_iou
    from facedet.model.losses import POSITIVE, assign_targets
    from facedet.params.sections import AugmentParams
    from facedet.train.input import augment_example

    config = load_preset(preset, ROOT / "configs")
    anchors = tf.constant(anchor_boxes(config))
    cfg = AugmentParams(**augment)
    records = tf.data.TFRecordDataset(files).shuffle(4096, seed=0).repeat()
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    examples = tf.data.Dataset.zip(records, seeds).map(
        lambda r, s: augment_example(r, s, config.input_size, cfg), num_parallel_calls=tf.data.AUTOTUNE)
    stats = {b: [0, 0, 0] for b in BINS[:-1]}
    for _, boxes in examples.take(images):
        boxes = tf.reshape(boxes, [-1, 4])
        if not len(boxes):
            continue
        _, labels = assign_targets(boxes, anchors, positive_iou, negative_iou)
        iou = pairwise_iou(boxes, anchors).numpy()  # (N, A)
        owner = np.argmax(iou, axis=0)
        positive = labels.numpy() == POSITIVE
        side = np.max((boxes[:, 2:] - boxes[:, :2]).numpy(), axis=1) * config.input_size
        for i, size in enumerate(side):
            b = BINS[np.searchsorted(BINS, size, side="right") - 1]
            stats[b][0] += 1
            stats[b][1] += int(iou[i].max() >= positive_iou)
            stats[b][2] += int(np.sum(positive & (owner == i)))
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tfrecords", type=Path, default=ROOT / "data/tfrecords")
    parser.add_argument("--images", type=int, default=400, help="training examples drawn per recipe")
    args = parser.parse_args(argv)
    from facedet.data.tfrecord_schema import list_shards

    files = list_shards(args.tfrecords, "train")
    if not files:
        raise SystemExit(f"anchor_matching: no {args.tfrecords}/train.record-* shards (run the shard stage)")
    print(f"{args.images} training examples per recipe; face size = longer side at the model input\n")
    print("| recipe | face size (px) | faces | share with an anchor at IoU >= positive_iou | positive anchors per face |")
    print("|---|---|---|---|---|")
    for name, (preset, augment, pos, neg) in RECIPES.items():
        stats = match_stats(preset, augment, pos, neg, files, args.images)
        for low, high in zip(BINS[:-1], BINS[1:]):
            faces, matched, positives = stats[low]
            span = f"{low}-{high}" if high < BINS[-1] else f">= {low}"
            share = f"{matched / faces:.2f}" if faces else "-"
            per_face = f"{positives / faces:.1f}" if faces else "-"
            print(f"| {name} (IoU {pos}) | {span} | {faces} | {share} | {per_face} |")


if __name__ == "__main__":
    main()
