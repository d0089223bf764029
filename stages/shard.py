"""shard: data/raw/ + data/interim/ + params `shard` -> data/tfrecords/ (train.record-0000i-of-0000n,
val.record-..., label_map.pbtxt), TF OD API tf.Examples with the original JPEG bytes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from facedet.atomic import atomic_path
from facedet.filtering import load_filtered
from facedet.params import ParamsError, load_section
from facedet.wider import WiderArchive

RAW_DIR = "data/raw"
INTERIM_DIR = "data/interim"
TFRECORD_DIR = "data/tfrecords"


def shard() -> None:
    from facedet.tfrecords import ExampleEncoder, ShardParams, label_map_text, write_shards  # TF: not for --help

    params = load_section("shard", ShardParams)
    start = time.monotonic()
    archive = WiderArchive(RAW_DIR)
    with atomic_path(TFRECORD_DIR, is_dir=True) as tmp:
        for split, count in (("train", params.train_shards), ("val", params.val_shards)):
            images = load_filtered(INTERIM_DIR, split)
            write_shards(Path(tmp) / f"{split}.record", images, count, encode=ExampleEncoder(archive, split),
                         workers=params.workers, assignment=params.assignment)
            print(f"shard: {split}: {len(images)} examples in {count} shards")
        (Path(tmp) / "label_map.pbtxt").write_text(label_map_text(), encoding="utf-8")
    print(f"shard: done in {time.monotonic() - start:.1f} s -> {TFRECORD_DIR}/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.shard", description=__doc__)
    parser.parse_args(argv)
    try:
        shard()
    except (ParamsError, FileNotFoundError) as err:
        sys.exit(f"shard: error: {err}")


if __name__ == "__main__":
    main()
