"""filter: data/raw/ + params `filter` -> data/interim/{train,val}_{images,faces}.csv,
reports/filter.json (kept/dropped counts per reason, metrics; with extra training sources, train images and
faces in and kept per source under `train.by_source`) and reports/filter/face_sizes.csv (plot)."""

from __future__ import annotations

import argparse
import json
import time

from tqdm import tqdm

from facedet.pipeline.atomic import atomic_path, write_text_atomic
from facedet.pipeline.disk import exit_on_disk_full
from facedet.data.filtering import EmptySplitError, FilterParams, run_filter
from facedet.pipeline.lifetime import die_with_parent
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.data.wider_gt import WiderFormatError
from facedet.data.wider_archive import WiderArchive

RAW_DIR = "data/raw"
INTERIM_DIR = "data/interim"
METRICS = "reports/filter.json"
FACE_SIZES = "reports/filter/face_sizes.csv"


def filter_data(params: FilterParams) -> None:
    start = time.monotonic()
    archive = WiderArchive(RAW_DIR)
    with tqdm(desc="filter: images checked", unit="img") as bar, atomic_path(INTERIM_DIR, is_dir=True) as tmp:
        stats, sizes = run_filter(archive, params, tmp, progress=bar.update)
    write_text_atomic(METRICS, json.dumps(stats, indent=2) + "\n")
    write_text_atomic(FACE_SIZES, sizes.to_csv(index=False, lineterminator="\n"))
    for split, s in stats.items():
        print(f"filter: {split}: kept {s['images_kept']}/{s['images_in']} images, "
              f"{s['faces_kept']}/{s['faces_in']} faces")
        for broken in s["broken_images"]:
            print(f"filter: {split}: dropped {broken['image']}: {broken['reason']} ({broken['detail']})")
    print(f"filter: done in {time.monotonic() - start:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.filter", description=__doc__)
    parser.parse_args(argv)
    die_with_parent()
    with exit_on_bad_params("filter"):
        params = load_section("filter", FilterParams)
    with exit_on_bad_params("filter", WiderFormatError, FileNotFoundError, EmptySplitError), \
            exit_on_disk_full("filter", INTERIM_DIR):
        filter_data(params)


if __name__ == "__main__":
    main()
