"""shard: data/raw/ + data/interim/ + params `shard` -> data/tfrecords/ (train.record-0000i-of-0000n,
val.record-..., label_map.pbtxt): TF OD API tf.Examples with the original JPEG bytes (re-encoded only
where `shard.reencode` / `shard.max_image_side` ask, or for CMYK / non-JPEG images, and then marked
in `image/transform`). Every shard is read back and checked against the filtered table before the
directory is put in place."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from facedet.pipeline.atomic import atomic_path
from facedet.pipeline.disk import exit_on_disk_full, require_free_space
from facedet.data.filtering import load_filtered
from facedet.pipeline.lifetime import die_with_parent
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.data.wider_gt import WiderFormatError
from facedet.data.wider_archive import WiderArchive

RAW_DIR = "data/raw"
INTERIM_DIR = "data/interim"
TFRECORD_DIR = "data/tfrecords"

if TYPE_CHECKING:
    from facedet.data.tfrecords import ShardParams


def shard(params: ShardParams) -> None:
    from facedet.data.tfrecords import ExampleEncoder, ShardCheckError, check_shards, label_map_text, write_shards

    start = time.monotonic()
    archive = WiderArchive(RAW_DIR)
    splits = {"train": params.train_shards, "val": params.val_shards}
    with atomic_path(TFRECORD_DIR, is_dir=True) as tmp:
        tables = {split: load_filtered(INTERIM_DIR, split) for split in splits}
        for split, table in tables.items():
            if not table:
                raise ShardCheckError(f"{INTERIM_DIR}/{split}_images.csv: no images to shard (re-run the filter "
                                      "stage: it stops when a split is left empty)")
        # the shards hold the images (re-encoding changes their size little): about the archives' size
        need = sum((Path(RAW_DIR) / f"WIDER_{split}.zip").stat().st_size for split in splits)
        require_free_space(TFRECORD_DIR, need, "the TFRecord shards")
        # every split is written before any is checked: the check starts TensorFlow, and the
        # writer's worker processes must not be forked from a process running it
        written = {split: write_shards(Path(tmp) / f"{split}.record", tables[split], count,
                                       encode=ExampleEncoder(archive, split, params), workers=params.workers,
                                       assignment=params.assignment)
                   for split, count in splits.items()}
        for split, paths in written.items():
            checked = check_shards(paths, tables[split])
            print(f"shard: {split}: {checked['examples']} examples, {checked['faces']} faces in {len(paths)} shards "
                  f"(read back and checked against {INTERIM_DIR}/{split}_faces.csv)")
        (Path(tmp) / "label_map.pbtxt").write_text(label_map_text(), encoding="utf-8")
    print(f"shard: done in {time.monotonic() - start:.1f} s -> {TFRECORD_DIR}/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.shard", description=__doc__)
    parser.parse_args(argv)
    die_with_parent()
    from facedet.data.tfrecords import ShardCheckError, ShardParams  # TF: not for --help

    with exit_on_bad_params("shard"):
        params = load_section("shard", ShardParams)
    with exit_on_bad_params("shard", FileNotFoundError, WiderFormatError, ShardCheckError), \
            exit_on_disk_full("shard", TFRECORD_DIR):
        shard(params)


if __name__ == "__main__":
    main()
