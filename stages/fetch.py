"""fetch: params `data` -> data/raw/ (WIDER_train.zip, WIDER_val.zip, wider_face_split.zip, eval_tools.zip).

`data.source: embedded` generates the synthetic dataset offline; `widerface` downloads the real
archives from the mirrors in `data.widerface` (verified by size and sha256; resumable partial files
in data/downloads/, outside DVC). Files with no published checksum are pinned on first download in
data/widerface.lock.json: commit that file. `local` reads a WIDERFace copy already on disk
(`data.local.path`: the official archives or the same tree unpacked; see facedet.data.local_wider) and
records the sha256 of what it read in data/raw/sources.json. `data.extra_train` sources (VOC, COCO,
WIDER trees, each indexed and checked by its own `extra_train@<name>` stage into data/extra/<name>.zip)
join the train split as events of their own (facedet.data.extra_train).
"""

from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from facedet.pipeline.atomic import atomic_path
from facedet.data.sources import DataParams, write_sources_json
from facedet.pipeline.disk import exit_on_disk_full
from facedet.data.download import DownloadError
from facedet.data.wider_fetch import fetch_widerface
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.extra_train import EXTRA_DIR, add_extra_train, index_paths
from facedet.pipeline.lifetime import die_with_parent
from facedet.data.local_wider import write_local_wider
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.data.wider_gt import WiderFormatError

RAW_DIR = "data/raw"
DOWNLOAD_DIR = "data/downloads"
HASH_LOCK = "data/widerface.lock.json"


def say(line: str) -> None:
    print(f"fetch: {line}")


def fetch(params: DataParams) -> None:
    start = time.monotonic()
    index_paths(list(params.extra_train), EXTRA_DIR)
    with atomic_path(RAW_DIR, is_dir=True) as tmp:
        record: dict = {"source": params.source}
        if params.source == "embedded":
            emb = params.embedded
            with tqdm(total=emb.train_images + emb.val_images, desc="fetch: drawing synthetic images") as bar:
                counts = write_synthetic_dataset(emb, tmp, progress=bar.update)
            say(f"synthetic dataset: {counts}")
        elif params.source == "local":
            say(f"WIDERFace copy in {params.local.path}")
            record["local"] = write_local_wider(params.local.path, tmp, report=say)
        else:
            fetch_widerface(params.widerface, tmp, DOWNLOAD_DIR, HASH_LOCK, report=say)
            say("WIDERFace archives verified")
        if params.extra_train:
            record["extra_train"] = add_extra_train(tmp, list(params.extra_train), params.source, EXTRA_DIR, say)
        if len(record) > 1:
            write_sources_json(tmp, record)
    print(f"fetch: done in {time.monotonic() - start:.1f} s -> {RAW_DIR}/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    die_with_parent()
    with exit_on_bad_params("fetch"):
        params = load_section("data", DataParams)
    with exit_on_bad_params("fetch", DownloadError, WiderFormatError, ValueError), \
            exit_on_disk_full("fetch", RAW_DIR):
        fetch(params)


if __name__ == "__main__":
    main()
