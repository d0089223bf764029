"""fetch: params `data` -> data/raw/ (WIDER_train.zip, WIDER_val.zip, wider_face_split.zip, eval_tools.zip).

`data.source: embedded` generates the embedded dataset offline; `widerface` downloads the real
archives from the mirrors in `data.widerface` (verified by size and sha256; resumable partial files
in data/downloads/, outside DVC). Files with no published checksum are pinned on first download in
data/widerface.lock.json: commit that file.
"""

from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from facedet.atomic import atomic_path
from facedet.disk import exit_on_disk_full
from facedet.download import DataParams, DownloadError, fetch_widerface
from facedet.embedded import write_embedded_dataset
from facedet.lifetime import die_with_parent
from facedet.params import exit_on_bad_params, load_section
from facedet.wider import WiderFormatError

RAW_DIR = "data/raw"
DOWNLOAD_DIR = "data/downloads"
HASH_LOCK = "data/widerface.lock.json"


def fetch(params: DataParams) -> None:
    start = time.monotonic()
    if params.source == "embedded":
        emb = params.embedded
        with tqdm(total=emb.train_images + emb.val_images, desc="fetch: drawing embedded images") as bar, \
                atomic_path(RAW_DIR, is_dir=True) as tmp:
            counts = write_embedded_dataset(emb, tmp, progress=bar.update)
        print(f"fetch: embedded dataset in {RAW_DIR}/: {counts} ({time.monotonic() - start:.1f} s)")
    else:
        fetch_widerface(params.widerface, RAW_DIR, DOWNLOAD_DIR, HASH_LOCK,
                        report=lambda line: print(f"fetch: {line}"))
        print(f"fetch: WIDERFace archives verified in {RAW_DIR}/ ({time.monotonic() - start:.1f} s)")


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
