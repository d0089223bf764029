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
from facedet.pipeline.atomic import atomic_path
from facedet.data.sources import DataParams
from facedet.pipeline.disk import exit_on_disk_full
from facedet.data.extra_train import EXTRA_DIR, write_extra_index
from facedet.pipeline.lifetime import die_with_parent
from facedet.params.loader import ParamsError, exit_on_bad_params, load_section
from facedet.data.wider_gt import WiderFormatError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.extra_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the source's key under data.extra_train in params.yaml")
    args = parser.parse_args(argv)
    die_with_parent()
    stage = f"extra_train@{args.name}"
    with exit_on_bad_params(stage):
        params = load_section("data", DataParams)
        if args.name not in params.extra_train:
            raise ParamsError(f"params.yaml: no source 'data.extra_train.{args.name}' "
                              f"(sources: {', '.join(params.extra_train) or 'none'})")
    start = time.monotonic()
    with exit_on_bad_params(stage, AnnotationError, WiderFormatError), exit_on_disk_full(stage, EXTRA_DIR):
        with atomic_path(Path(EXTRA_DIR) / f"{args.name}.zip") as tmp:
            summary = write_extra_index(args.name, params.extra_train[args.name], tmp)
    print(f"{stage}: {summary['images']} images, {summary['faces']} faces ({summary['ignored']} ignored regions), "
          f"by name {summary['faces_by_name']} -> {EXTRA_DIR}/{args.name}.zip ({time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
