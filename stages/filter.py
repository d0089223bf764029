"""filter: data/raw/ + params `filter` -> data/interim/{train,val}_{images,faces}.csv,
reports/filter.json (kept/dropped counts per reason, metrics; with extra training sources, train images and
faces in and kept per source under `train.by_source`) and reports/filter/face_sizes.csv (plot)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from facedet.data.filtering import EmptySplitError, run_filter
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import WiderFormatError
from facedet.params.sections import FilterParams
from facedet.process.atomic import atomic_path, write_text_atomic
from facedet.process.paths import FACE_SIZES, FILTER_METRICS, INTERIM_DIR, RAW_DIR
from facedet.process.stage_runner import run_stage, section, stage_parser
from facedet.process.zips import UnsafeMemberError

PARSER = stage_parser("filter", __doc__, raw_dir=RAW_DIR, interim_dir=INTERIM_DIR, filter_metrics=FILTER_METRICS,
                      face_sizes=FACE_SIZES)


def filter_data(params: FilterParams, raw_dir: Path, interim_dir: Path, filter_metrics: Path,
                face_sizes: Path) -> None:
    start = time.monotonic()
    archive = WiderArchive(raw_dir)
    with tqdm(desc="filter: images checked", unit="img") as bar, atomic_path(interim_dir, is_dir=True) as tmp:
        stats, sizes = run_filter(archive, params, tmp, progress=bar.update)
    write_text_atomic(filter_metrics, json.dumps(stats, indent=2) + "\n")
    write_text_atomic(face_sizes, sizes.to_csv(index=False, lineterminator="\n"))
    for split, s in stats.items():
        print(f"filter: {split}: kept {s['images_kept']}/{s['images_in']} images, "
              f"{s['faces_kept']}/{s['faces_in']} faces")
        for broken in s["broken_images"]:
            print(f"filter: {split}: dropped {broken['image']}: {broken['reason']} ({broken['detail']})")
    print(f"filter: done in {time.monotonic() - start:.1f} s")


def main(argv: list[str] | None = None) -> None:
    run_stage(filter_data, PARSER, argv, section("filter", FilterParams),
              errors=(WiderFormatError, UnsafeMemberError, FileNotFoundError, EmptySplitError), writes="interim_dir")


if __name__ == "__main__":
    main()
