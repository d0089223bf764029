"""Every stage's command line and run: `python -m stages.<name> --help` prints the stage's docstring, the
params file and each path the stage reads or writes are flags (defaulting to facedet.process.paths), and
`run_stage` does what each stage's `main` would otherwise repeat: parse, die with the dvc that started it,
load the params, run the stage's function, and end a bad param, a known error or a full disk in one line."""

from __future__ import annotations

import argparse
import contextlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from facedet.params.loader import PARAMS_FILE, exit_on_bad_params, load_section
from facedet.process.disk import exit_on_disk_full
from facedet.process.lifetime import die_with_parent

T = TypeVar("T")
Loader = Callable[[argparse.Namespace], dict[str, Any]]  # parsed flags -> the stage function's loaded arguments
Errors = tuple[type[Exception], ...]


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


def section(name: str, spec: type) -> Loader:
    """A `run_stage` loader: params.yaml section `name` as the dataclass `spec`, passed as `params`."""
    return lambda args: {"params": load_section(name, spec, args.params)}


def run_stage(work: Callable[..., T], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
              load: Loader | None = None, errors: Errors | Callable[[], Errors] = (),
              writes: str | None = None) -> T:
    """Run a stage: parse `argv` with `parser` (from `stage_parser`), die with the dvc that started it, call
    `load(flags)` (e.g. `section("filter", FilterParams)`), then `work(**loaded, **flags)`, each parameter of
    `work` not loaded taking the parsed flag of its name. A ParamsError, one of `errors` (or of the tuple
    `errors()` returns: error classes whose modules import TensorFlow, imported only once the params are
    good) or a full disk under the path flag `writes` ends the process with one line on stderr, status 1.
    The stage is named as DVC names it: `<stage>`, or `<stage>@<name>` for a `foreach` stage's key `name`."""
    args = parser.parse_args(argv)
    die_with_parent()
    stage = parser.prog.rsplit(".", 1)[-1]
    stage = f"{stage}@{args.name}" if getattr(args, "name", None) else stage
    with exit_on_bad_params(stage):
        loaded = load(args) if load else {}
    flags = {name: getattr(args, name) for name in inspect.signature(work).parameters if hasattr(args, name)}
    with exit_on_bad_params(stage, *(errors() if callable(errors) else errors)), \
            exit_on_disk_full(stage, getattr(args, writes)) if writes else contextlib.nullcontext():
        return work(**{**flags, **loaded})

