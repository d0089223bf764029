"""params.yaml `data`: where the fetch stage gets its faces (one main source, plus extra training
sources) and what it writes about them in data/raw/sources.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facedet.data.wider_fetch import WiderfaceParams
from facedet.data.synthetic import EmbeddedParams
from facedet.data.extra_train import ExtraSource, check_extra_sources
from facedet.data.local_wider import SOURCES_JSON, LocalParams


@dataclass(frozen=True)
class DataParams:
    """params.yaml `data` (the fetch stage)."""

    source: Literal["embedded", "widerface", "local"] = "embedded"
    embedded: EmbeddedParams = field(default_factory=EmbeddedParams)
    widerface: WiderfaceParams = field(default_factory=WiderfaceParams)
    local: LocalParams = field(default_factory=LocalParams)
    extra_train: dict[str, ExtraSource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_extra_sources(self.extra_train)


def write_sources_json(raw_dir: Path, record: dict[str, Any]) -> None:
    """data/raw/sources.json: what each source was and the sha256 of what was read (sorted keys, so the
    same inputs give the same bytes; no paths, so the same bytes elsewhere give the same data/raw)."""
    (raw_dir / SOURCES_JSON).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
