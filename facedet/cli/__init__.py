"""The `facedet` command.

    facedet eval-wider --pred PRED_DIR --gt GT_DIR [--json OUT.json]
    facedet detect ...            (facedet.runtime.detect)

Every subcommand lives in a module exposing `add_parser(subparsers)` (it calls
`subparsers.add_parser(name, ...)` and adds its arguments) and `run(args) -> int | None`.
To add one, list its module in COMMAND_MODULES; keep heavy imports (TensorFlow) inside `run`.
Errors the user can fix are printed as one line, `facedet <command>: error: ...`, exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

from facedet.data.wider import SUBSETS

COMMAND_MODULES: tuple[str, ...] = (
    "facedet.cli",  # eval-wider, below
    "facedet.runtime.detect",
)

USER_ERRORS = (OSError, ValueError, KeyError)


# ---------------------------------------------------------------------------------------------
# eval-wider


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
    from facedet.pipeline.atomic import write_text_atomic
    from facedet.evaluate.submission import read_predictions
    from facedet.data.wider import read_eval_ground_truth
    from facedet.evaluate.wider_eval import evaluate_wider

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


# ---------------------------------------------------------------------------------------------
# the command


def _command_modules() -> list[ModuleType]:
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(sys.modules[__name__] if name == __name__ else importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but something it imports is missing: say so
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The `facedet` parser with every subcommand of COMMAND_MODULES (absent modules are skipped)."""
    parser = argparse.ArgumentParser(prog="facedet", description="Face-detector pipeline tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        for name in set(subparsers.choices) - before:
            subparsers.choices[name].set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `facedet` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args._run(args)
    except USER_ERRORS as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"facedet {args.command}: error: {message}", file=sys.stderr)
        return 1
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
