"""fetch: params `data` -> data/raw/ (WIDER_train.zip, WIDER_val.zip, wider_face_split.zip, eval_tools.zip).

`data.source: synthetic` generates the synthetic dataset offline; `widerface` downloads the real
archives from the mirrors in `data.widerface` (verified by size and sha256; resumable partial files in
data/downloads/, outside DVC). Files with no published checksum are pinned on first download in
data/widerface.lock.json: commit that file. `local` reads a WIDERFace copy already on disk
(`data.local.path`: the official archives or the same tree unpacked; see facedet.data.local_wider) and
records the sha256 of what it read in data/raw/sources.json. `data.extra_train` sources (VOC, COCO,
WIDER trees, each indexed and checked by its own `extra_train@<name>` stage into data/extra/<name>.zip)
join the train split as events of their own (facedet.data.extra_train).
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from facedet.data.download import DownloadError
from facedet.data.extra_train import add_extra_train, index_paths
from facedet.data.local_wider import write_local_wider
from facedet.data.sources import write_sources_json
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.wider_fetch import fetch_widerface
from facedet.data.wider_gt import WiderFormatError
from facedet.params.sections import DataParams
from facedet.process.atomic import atomic_path
from facedet.process.paths import DOWNLOAD_DIR, EXTRA_DIR, RAW_DIR, WIDERFACE_LOCK
from facedet.process.stage_runner import run_stage, section, stage_parser

PARSER = stage_parser("fetch", __doc__, raw_dir=RAW_DIR, extra_dir=EXTRA_DIR, download_dir=DOWNLOAD_DIR,
                      widerface_lock=WIDERFACE_LOCK)


def say(line: str) -> None:
    print(f"fetch: {line}")


def fetch(params: DataParams, raw_dir: Path, extra_dir: Path, download_dir: Path, widerface_lock: Path) -> None:
    start = time.monotonic()
    index_paths(list(params.extra_train), extra_dir)
    with atomic_path(raw_dir, is_dir=True) as tmp:
        record: dict = {"source": params.recorded_source}
        if params.source == "synthetic":
            synthetic = params.synthetic
            with tqdm(total=synthetic.train_images + synthetic.val_images,
                      desc="fetch: drawing synthetic images") as bar:
                counts = write_synthetic_dataset(synthetic, tmp, progress=bar.update)
            say(f"synthetic dataset: {counts}")
        elif params.source == "local":
            say(f"WIDERFace copy in {params.local.path}")
            record["local"] = write_local_wider(params.local.path, tmp, report=say)
        else:
            fetch_widerface(params.widerface, tmp, download_dir, widerface_lock, report=say)
            say("WIDERFace archives verified")
        if params.extra_train:
            record["extra_train"] = add_extra_train(tmp, list(params.extra_train), params.recorded_source,
                                                    extra_dir, say)
        if len(record) > 1:
            write_sources_json(tmp, record)
    print(f"fetch: done in {time.monotonic() - start:.1f} s -> {raw_dir}/")


def main(argv: list[str] | None = None) -> None:
    run_stage(fetch, PARSER, argv, section("data", DataParams), errors=(DownloadError, WiderFormatError, ValueError),
              writes="raw_dir")


if __name__ == "__main__":
    main()
