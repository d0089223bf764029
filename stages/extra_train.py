"""extra_train@<name>: params `data.extra_train.<name>` + the files under its path -> data/extra/<name>.zip.

Reads one extra training source (PASCAL VOC, COCO instances JSON, or a WIDER-layout tree), checks every
annotation against its image, and writes its images and WIDER gt rows, ready for the fetch stage to add
to the train split (facedet.data.extra_train). dvc.yaml makes one such stage per source (`foreach`), so DVC
hashes each source's files and a change to one re-runs its stage and fetch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from facedet.data.annotations import AnnotationError
from facedet.data.extra_train import write_extra_index
from facedet.data.wider_gt import WiderFormatError
from facedet.params.loader import ParamsError, load_section
from facedet.params.sections import DataParams
from facedet.process.atomic import atomic_path
from facedet.process.paths import EXTRA_DIR
from facedet.process.stage_runner import run_stage, stage_parser
from facedet.process.zips import UnsafeMemberError

PARSER = stage_parser("extra_train", __doc__, extra_dir=EXTRA_DIR)
PARSER.add_argument("name", help="the source's key under data.extra_train in params.yaml")


def source_params(args: argparse.Namespace) -> dict[str, DataParams]:
    """params.yaml `data`, which must name the source `args.name` under `data.extra_train`."""
    params = load_section("data", DataParams, args.params)
    if args.name not in params.extra_train:
        raise ParamsError(f"params.yaml: no source 'data.extra_train.{args.name}' "
                          f"(sources: {', '.join(params.extra_train) or 'none'})")
    return {"params": params}


def extra_train(name: str, params: DataParams, extra_dir: Path) -> None:
    start = time.monotonic()
    with atomic_path(extra_dir / f"{name}.zip") as tmp:
        summary = write_extra_index(name, params.extra_train[name], tmp)
    print(f"extra_train@{name}: {summary['images']} images, {summary['faces']} faces ({summary['ignored']} ignored "
          f"regions), by name {summary['faces_by_name']} -> {extra_dir}/{name}.zip ({time.monotonic() - start:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    run_stage(extra_train, PARSER, argv, source_params, errors=(AnnotationError, WiderFormatError, UnsafeMemberError),
              writes="extra_dir")


if __name__ == "__main__":
    main()
