"""The `facedet` command, one module per subcommand:

    facedet detect MODEL.tflite IMAGE_OR_DIR --out DIR      (facedet.cli.detect)
    facedet eval-wider --pred PRED_DIR --gt GT_DIR [--json OUT.json]   (facedet.cli.eval_wider)

Every subcommand lives in a module exposing `add_parser(subparsers)` (it calls
`subparsers.add_parser(name, ...)` and adds its arguments) and `run(args) -> int | None`.
To add one, list its module in COMMAND_MODULES; keep heavy imports (TensorFlow) inside `run`.
Errors the user can fix are printed as one line, `facedet <command>: error: ...`, exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

COMMAND_MODULES: tuple[str, ...] = (
    "facedet.cli.eval_wider",
    "facedet.cli.detect",
)

USER_ERRORS = (OSError, ValueError, KeyError)


def _command_modules() -> list[ModuleType]:
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
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
