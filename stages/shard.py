"""shard: data/raw/ + data/interim/ + params `shard` -> data/tfrecords/ (train.record-0000i-of-0000n,
val.record-..., label_map.pbtxt): TF OD API tf.Examples with the original JPEG bytes (re-encoded only
where `shard.reencode` / `shard.max_image_side` ask, or for CMYK / non-JPEG images, and then marked
in `image/transform`). Every shard is read back and checked against the filtered table before the
directory is put in place."""

from __future__ import annotations

import time
from pathlib import Path

from facedet.data.filtering import load_filtered
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import WiderFormatError
from facedet.params.sections import ShardParams
from facedet.process.atomic import atomic_path
from facedet.process.disk import require_free_space
from facedet.process.paths import INTERIM_DIR, RAW_DIR, TFRECORD_DIR
from facedet.process.stage_runner import run_stage, section, stage_parser
from facedet.process.zips import UnsafeMemberError

PARSER = stage_parser("shard", __doc__, raw_dir=RAW_DIR, interim_dir=INTERIM_DIR, tfrecord_dir=TFRECORD_DIR)


def shard(params: ShardParams, raw_dir: Path, interim_dir: Path, tfrecord_dir: Path) -> None:
    from facedet.data.tfrecord_schema import label_map_text
    from facedet.data.tfrecord_writer import ExampleEncoder, ShardCheckError, check_shards, write_shards

    start = time.monotonic()
    archive = WiderArchive(raw_dir)
    splits = {"train": params.train_shards, "val": params.val_shards}
    with atomic_path(tfrecord_dir, is_dir=True) as tmp:
        tables = {split: load_filtered(interim_dir, split) for split in splits}
        for split, table in tables.items():
            if not table:
                raise ShardCheckError(f"{interim_dir}/{split}_images.csv: no images to shard (re-run the filter "
                                      "stage: it stops when a split is left empty)")
        # the shards hold the images (re-encoding changes their size little): about the archives' size
        need = sum((raw_dir / f"WIDER_{split}.zip").stat().st_size for split in splits)
        require_free_space(tfrecord_dir, need, "the TFRecord shards")
        # every split is written before any is checked: the check starts TensorFlow, and the
        # writer's worker processes must not be forked from a process running it
        written = {split: write_shards(Path(tmp) / f"{split}.record", tables[split], count,
                                       encode=ExampleEncoder(archive, split, params), workers=params.workers,
                                       assignment=params.assignment)
                   for split, count in splits.items()}
        for split, paths in written.items():
            checked = check_shards(paths, tables[split])
            print(f"shard: {split}: {checked['examples']} examples, {checked['faces']} faces in {len(paths)} shards "
                  f"(read back and checked against {interim_dir}/{split}_faces.csv)")
        (Path(tmp) / "label_map.pbtxt").write_text(label_map_text(), encoding="utf-8")
    print(f"shard: done in {time.monotonic() - start:.1f} s -> {tfrecord_dir}/")


def shard_errors() -> tuple[type[Exception], ...]:
    """The errors that end the stage in one line; ShardCheckError's module imports TensorFlow."""
    from facedet.data.tfrecord_writer import ShardCheckError  # TF: not for --help or a params error

    return FileNotFoundError, WiderFormatError, UnsafeMemberError, ShardCheckError


def main(argv: list[str] | None = None) -> None:
    run_stage(shard, PARSER, argv, section("shard", ShardParams), errors=shard_errors, writes="tfrecord_dir")


if __name__ == "__main__":
    main()
