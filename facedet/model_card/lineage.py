"""Where the model came from: the git commit (and whether the work tree differs from it), the DVC hashes
of the data outputs as dvc.lock records them, and the command that reproduces the run. Missing lineage
(no git, no dvc.lock) is recorded as such, never guessed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from facedet.params.loader import PARAMS_FILE, parse_params
from facedet.process.paths import RAW_DIR, TFRECORD_DIR

DATA_OUTS = (str(RAW_DIR), str(TFRECORD_DIR))  # as dvc.lock names them
PIPELINE_PRODUCTS = ("dvc.lock", "reports/", "dvclive/", "models/model_card.")  # rewritten by `dvc repro`: not "dirty code"


def git_lineage(repo: str | os.PathLike = ".") -> dict[str, Any]:
    """{'commit': HEAD sha or None, 'dirty': bool or None, 'dirty_paths': [...]} of the work tree.

    Dirty means tracked or untracked (not ignored) files differ from HEAD, outside the files that
    `dvc repro` itself rewrites (PIPELINE_PRODUCTS)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=all")  # each file, not its new folder
    if commit is None or status is None:
        return {"commit": None, "dirty": None, "dirty_paths": [],
                "note": "not a git work tree, or no commit yet"}
    paths = sorted({line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()})
    paths = [p for p in paths if not p.startswith(PIPELINE_PRODUCTS)]
    return {"commit": commit.strip(), "dirty": bool(paths), "dirty_paths": paths[:50]}


def dvc_lock_hashes(lock_path: str | os.PathLike = "dvc.lock", paths: Sequence[str] = DATA_OUTS) -> dict[str, Any]:
    """The hashes DVC recorded for `paths` among the stage outs of dvc.lock:
    {'lock': path, 'found': bool, 'outs': {path: {'stage', 'md5', 'size', 'nfiles'} or None}}."""
    lock_path = Path(lock_path)
    outs: dict[str, Any] = {path: None for path in paths}
    if not lock_path.is_file():
        return {"lock": str(lock_path), "found": False, "outs": outs}
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    for stage, entry in (lock.get("stages") or {}).items():
        for out in (entry or {}).get("outs") or []:
            if out.get("path") in outs:
                outs[out["path"]] = {"stage": stage, "md5": out.get("md5"), "size": out.get("size"),
                                     "nfiles": out.get("nfiles")}
    return {"lock": str(lock_path), "found": True, "outs": outs}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _override(key: str, value: Any, new: bool) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else yaml.safe_dump(value).split("\n")[0]
    text = "null" if value is None else text
    return f"-S '{'+' if new else ''}{key}={text}'"


def reproduce_command(params: Mapping[str, Any], code: Mapping[str, Any],
                      repo: str | os.PathLike = ".") -> dict[str, Any]:
    """How to get this model again: {'command', 'exact': bool, 'note'}. A clean checkout: `git checkout
    <commit> && dvc repro`. Params that differ from the commit's params.yaml (`dvc exp run -S`, an
    edited file) become `-S key=value` overrides of `dvc exp run`; other uncommitted changes make
    the command inexact, and the note names them."""
    commit = code.get("commit")
    if not commit:
        return {"command": None, "exact": False, "note": "no git commit: the code is not identified"}
    try:
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{PARAMS_FILE.as_posix()}"],
                               capture_output=True, text=True, timeout=30)
        committed = parse_params(shown.stdout) if shown.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError):
        committed = {}
    used, before = _flatten(params), _flatten(committed)
    overrides = [_override(k, v, k not in before) for k, v in used.items() if before.get(k, object()) != v]
    overrides += [f"-S '~{k}'" for k in before if k not in used]
    command = f"git checkout {commit} && " + (f"dvc exp run {' '.join(overrides)}" if overrides else "dvc repro")
    others = [p for p in code.get("dirty_paths") or [] if p != PARAMS_FILE.as_posix()]
    note = ("the params are those the run used" + (f" ({len(overrides)} differ from the commit's params.yaml)"
                                                   if overrides else ""))
    if others:
        note += f"; not exact: uncommitted changes to {', '.join(others[:10])} are not in the commit"
    return {"command": command, "exact": not others, "note": note}
