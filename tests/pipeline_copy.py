"""Shared by the end-to-end tests: a fresh copy of the repository with small params, and a way
to run `dvc`/`git` in it as a user would (the venv's `python` and `dvc` first on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Not copied from the repository's top folder (facedet/data/ is code and is copied) ...
NOT_COPIED = {".git", ".venv", "data", "models", "reports", "dvclive", "cache", "tmp"}
NEVER_COPIED = {"__pycache__", ".pytest_cache"}  # ... nor these from anywhere
EVALUATION_STAGES = {"evaluate", "evaluate_tflite", "model_card"}  # the card records the metrics
ALL_STAGES = {"fetch", "filter", "shard", "train", "evaluate", "export", "evaluate_tflite", "model_card"}

SMALL = {
    ("data", "synthetic", "train_images"): 40,
    ("data", "synthetic", "val_images"): 12,
    ("train", "steps"): 12,
    ("train", "warmup_steps"): 2,
    ("train", "batch_size"): 4,
    ("train", "checkpoint_every"): 6,
    ("export", "representative_images"): 8,
}


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def set_params(repo: Path, changes: dict[tuple[str, ...], object]) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for keys, value in changes.items():
        node = params
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def fresh_copy(dest: Path, changes: dict[tuple[str, ...], object] = SMALL) -> Path:
    """Copy the repository's source (no outputs, no caches) to `dest`, set small params, commit."""
    shutil.copytree(REPO, dest, ignore=lambda folder, names: [
        n for n in names if n in NEVER_COPIED or (n in NOT_COPIED and Path(folder) == REPO)])
    tracked_data = subprocess.run(["git", "ls-files", "data"], cwd=REPO, capture_output=True, text=True, check=True)
    for rel in tracked_data.stdout.split():  # data/.gitignore, data/local/README.md: what a clone has
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, dest / rel)
    set_params(dest, changes)
    run(["git", "init", "-q"], dest)
    commit(dest, "small params")
    return dest


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo)


def stages_run(log: str) -> set[str]:
    return {stage for stage in ALL_STAGES if f"Running stage '{stage}'" in log}


