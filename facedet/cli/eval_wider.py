"""`facedet eval-wider --pred PRED_DIR --gt GT_DIR [--json OUT.json]`: score a prediction directory in
the official submission layout with the official WIDER FACE Easy/Medium/Hard protocol."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from facedet.data.wider_mat import SUBSETS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The eval-wider subcommand."""
    parser = subparsers.add_parser(
        "eval-wider", help="score predictions with the official WIDER FACE Easy/Medium/Hard protocol",
        description="Score a prediction directory in the official submission layout "
                    "(<pred>/<event>/<stem>.txt: image name, count, 'x y w h score' lines) against the "
                    "official ground truth (wider_face_val.mat, wider_{easy,medium,hard}_val.mat). "
                    "Prints a table of AP per subset; with --json writes {\"easy\": AP, \"medium\": AP, "
                    "\"hard\": AP}. Images without a prediction file count as images without detections.")
    parser.add_argument("--pred", required=True, metavar="PRED_DIR", help="prediction directory")
    parser.add_argument("--gt", required=True, metavar="GT_DIR", help="directory holding the four official .mat files")
    parser.add_argument("--json", metavar="OUT.json", help="write the APs here (atomically)")
    return parser


def run(args: argparse.Namespace) -> int:
    from facedet.data.wider_mat import read_eval_ground_truth
    from facedet.evaluate.submission import read_predictions
    from facedet.evaluate.wider_eval import evaluate_wider
    from facedet.process.atomic import write_text_atomic

    ground_truth = read_eval_ground_truth(args.gt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = read_predictions(args.pred, [img.key for img in ground_truth])
    for w in caught:
        print(f"facedet eval-wider: warning: {w.message}", file=sys.stderr)
    result = evaluate_wider(ground_truth, predictions)
    print(f"{'subset':<8} {'AP':>7} {'faces':>7}")
    for name in SUBSETS:
        sub = result.subsets[name]
        print(f"{name:<8} {sub.ap:>7.4f} {sub.faces:>7d}")
    print(f"{result.images} images, {result.predictions} detections, "
          f"{result.images_without_predictions} images without detections")
    if args.json:
        aps = {name: (None if math.isnan(ap) else ap) for name, ap in result.ap.items()}
        write_text_atomic(args.json, json.dumps(aps, indent=2) + "\n")
    return 0
