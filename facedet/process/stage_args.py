"""Every stage's command line: `python -m stages.<name> --help` prints the stage's docstring, and the
params file and each path the stage reads or writes are flags, defaulting to facedet.process.paths."""

from __future__ import annotations

import argparse
from pathlib import Path

from facedet.params.loader import PARAMS_FILE


def stage_parser(stage: str, doc: str | None, **paths: Path) -> argparse.ArgumentParser:
    """The parser of `python -m stages.<stage>`: `doc` as its help, `--params`, and `--<name>` (a Path,
    default the given one) for each of `paths`; a stage adds its other arguments to it."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="the params file (default: %(default)s)")
    for name, default in paths.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, default=Path(default),
                            help="default: %(default)s")
    return parser
