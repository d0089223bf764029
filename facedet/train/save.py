"""The trained detector's files: models/detector/model.keras, byte-reproducible (the same weights give the
same bytes, so DVC's cache hits for the stages after training), and detector.json."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import keras

from facedet.model.config import DetectorConfig
from facedet.process.atomic import atomic_path
from facedet.process.zips import stored_zip_writer

SHARED_OBJECT_ID = re.compile(rb'"shared_object_id": (\d+)')  # id() of a shared object, in config.json
SAVE_DATE = "1980-01-01@00:00:00"  # metadata.json's date_saved, fixed like the zip members' dates


def save_detector(model: keras.Model, config: DetectorConfig, model_dir: str | os.PathLike,
                  backbone: dict | None = None) -> None:
    """Write `model_dir/model.keras`, `model_dir/detector.json` and, given `backbone` (the record of
    `facedet.model.backbone_weights.backbone_weights_record`), `model_dir/backbone.json`: the directory
    replaced atomically."""
    with atomic_path(model_dir, is_dir=True) as tmp:
        model.save(tmp / "saved.keras")
        _without_save_time(tmp / "saved.keras", tmp / "model.keras")
        (tmp / "saved.keras").unlink()
        (tmp / "detector.json").write_text(config.to_json(), encoding="utf-8")
        if backbone is not None:
            (tmp / "backbone.json").write_text(json.dumps(backbone, indent=2) + "\n", encoding="utf-8")


def _without_save_time(source: Path, target: Path) -> None:
    """Copy a .keras archive with what differs between processes removed: the save time
    (metadata.json's date_saved; member dates, by the fixed-date zip writer) and the memory addresses
    Keras writes as config.json's `shared_object_id` (renumbered 0, 1, ... in order of appearance)."""
    with zipfile.ZipFile(source) as src, stored_zip_writer(target) as add:
        for member in src.infolist():
            data = src.read(member)
            if member.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": SAVE_DATE}).encode()
            elif member.filename == "config.json":
                ids: dict[bytes, bytes] = {}
                data = SHARED_OBJECT_ID.sub(
                    lambda m: b'"shared_object_id": ' + ids.setdefault(m.group(1), str(len(ids)).encode()), data)
            add(member.filename, data)
