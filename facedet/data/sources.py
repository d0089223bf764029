"""data/raw/sources.json: what the fetch stage writes about where its faces came from (one main source,
plus extra training sources; params.yaml `data`, typed in facedet.params.sections.DataParams)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facedet.data.local_wider import SOURCES_JSON


def write_sources_json(raw_dir: Path, record: dict[str, Any]) -> None:
    """data/raw/sources.json: what each source was and the sha256 of what was read (sorted keys, so the
    same inputs give the same bytes; no paths, so the same bytes elsewhere give the same data/raw)."""
    (raw_dir / SOURCES_JSON).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
