"""`data.source: local`: a user points fetch at a WIDERFace copy on disk (the official archives, or the
same tree unpacked) and gets data/raw exactly as the download writes it; a bad copy stops fetch with
one line and leaves no data/raw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from facedet.data import wider_fetch
from facedet.data.download import Pin
from facedet.data.local_wider import write_local_wider
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import WiderFormatError
from facedet.params.sections import SyntheticParams
from facedet.process.hashing import sha256_of

REPO = Path(__file__).resolve().parents[1]
TINY = SyntheticParams(seed=3, train_images=8, val_images=6, min_side=48, max_side=96, max_faces=6)
RAW_NAMES = ["WIDER_train.zip", "WIDER_val.zip", "eval_tools.zip", "wider_face_split.zip"]


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> Path:
    """A WIDER copy as the four official-layout archives (the synthetic set, which is written that way)."""
    out = tmp_path_factory.mktemp("archives")
    write_synthetic_dataset(TINY, out)
    return out


def unpack(archives: Path, dest: Path, eval_tools: bool = True) -> Path:
    """The same copy unpacked, as a user who extracted the zips has it."""
    for name in RAW_NAMES:
        if name != "eval_tools.zip" or eval_tools:
            with zipfile.ZipFile(archives / name) as zf:
                zf.extractall(dest)
    return dest


def build(root: Path, tmp_path: Path, **kw) -> tuple[Path, dict, list[str]]:
    raw = tmp_path / "raw"
    raw.mkdir()
    said: list[str] = []
    record = write_local_wider(root, raw, progress=False, report=said.append, **kw)
    return raw, record, said


@pytest.mark.parametrize("layout", ["archives", "unpacked"])
def test_a_local_copy_gives_data_raw_byte_identical_to_its_source(archives, tmp_path, layout):
    root = archives if layout == "archives" else unpack(archives, tmp_path / "copy")
    raw, record, said = build(root, tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == RAW_NAMES
    for name in RAW_NAMES:
        assert (raw / name).read_bytes() == (archives / name).read_bytes(), name
    with zipfile.ZipFile(raw / "WIDER_train.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    files = record["files"]
    if layout == "archives":
        assert files["WIDER_val.zip"] == {"sha256": sha256_of(archives / "WIDER_val.zip"),
                                          "bytes": (archives / "WIDER_val.zip").stat().st_size, "official": False}
        assert any("WIDER_val.zip: not the official archive; sha256" in line for line in said)
    else:
        assert files["WIDER_train/images"]["images"] == TINY.train_images
        assert record["layout"]["images"] == {"train": "WIDER_train/images", "val": "WIDER_val/images"}
    assert not any(str(root) in json.dumps(record) for root in (archives, tmp_path)), "paths must not be recorded"


def test_the_official_archives_are_recognised_by_their_published_sha256(archives, tmp_path, monkeypatch):
    val = archives / "WIDER_val.zip"
    monkeypatch.setitem(wider_fetch.PUBLISHED, "WIDER_val.zip", Pin(val.stat().st_size, sha256_of(val), "published"))
    _, record, said = build(archives, tmp_path)
    assert record["files"]["WIDER_val.zip"]["official"] is True
    assert "WIDER_val.zip: the official archive (sha256 matches the published one)" in said


def test_an_archive_of_the_official_size_with_other_bytes_is_refused(archives, tmp_path, monkeypatch):
    val = archives / "WIDER_val.zip"
    monkeypatch.setitem(wider_fetch.PUBLISHED, "WIDER_val.zip", Pin(val.stat().st_size, "0" * 64, "published"))
    with pytest.raises(WiderFormatError, match="WIDER_val.zip: the size of the official WIDER_val.zip but another "
                                               "sha256.*damaged copy"):
        build(archives, tmp_path)


def test_without_eval_mat_files_every_valid_face_counts_in_all_three_subsets(archives, tmp_path):
    _, record, said = build(unpack(archives, tmp_path / "copy", eval_tools=False), tmp_path)
    assert "every valid face" in record["files"]["eval_ground_truth"]["generated"]
    assert any("written from wider_face_val_bbx_gt.txt" in line for line in said)
    archive = WiderArchive(tmp_path / "raw")
    records = {r.key: r for r in archive.records("val")}
    for image in archive.eval_ground_truth():
        faces = records[image.key].gt_rows
        valid = [i + 1 for i, f in enumerate(faces) if f[7] == 0 and f[2] >= 1 and f[3] >= 1]
        for subset in ("easy", "medium", "hard"):
            assert image.keep[subset].tolist() == valid
    assert len(archive.eval_ground_truth()) == TINY.val_images


def test_a_missing_image_names_the_gt_line(archives, tmp_path):
    root = unpack(archives, tmp_path / "copy")
    gt = root / "wider_face_split/wider_face_train_bbx_gt.txt"
    lines = gt.read_text().splitlines()
    victim = next(i for i, line in enumerate(lines) if line.endswith(".jpg") and i > 0)
    (root / "WIDER_train/images" / lines[victim]).unlink()
    with pytest.raises(WiderFormatError) as err:
        build(root, tmp_path)
    assert str(err.value).startswith(f"{gt}:{victim + 1}: image {lines[victim]} not found")


def test_a_broken_gt_txt_names_its_line(archives, tmp_path):
    root = unpack(archives, tmp_path / "copy")
    gt = root / "wider_face_split/wider_face_val_bbx_gt.txt"
    lines = gt.read_text().splitlines()
    lines[2] = "1 2 three 4 0 0 0 0 0 0"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(WiderFormatError, match=f"^{gt}:3: .*expected 10 integers"):
        build(root, tmp_path)


def test_three_of_four_eval_mat_files_is_an_error(archives, tmp_path):
    root = unpack(archives, tmp_path / "copy")
    (root / "eval_tools/ground_truth/wider_hard_val.mat").unlink()
    with pytest.raises(WiderFormatError, match="wider_hard_val.mat missing .give all four .mat files or none"):
        build(root, tmp_path)


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist or is not a directory"),
    (lambda root: (root / "WIDER_train/images").mkdir(parents=True),
     "holds neither the official WIDERFace archives nor the unpacked tree: missing WIDER_val.zip or WIDER_val/images/"),
])
def test_a_path_that_does_not_exist_or_holds_neither_layout(tmp_path, make, message):
    root = tmp_path / "copy"
    make(root)
    with pytest.raises(WiderFormatError, match=f"^data.local.path: {root} {message}"):
        build(root, tmp_path)


def run_fetch(cwd: Path, data: dict) -> subprocess.CompletedProcess:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(data)
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=cwd, env=env, capture_output=True, text=True)


def test_fetch_from_a_local_copy_records_the_hashes_and_a_bad_copy_leaves_no_data_raw(archives, tmp_path):
    root = unpack(archives, tmp_path / "copy")
    work = tmp_path / "work"
    work.mkdir()
    done = run_fetch(work, {"source": "local", "local": {"path": str(root)}})
    assert done.returncode == 0, done.stderr
    assert "fetch: WIDER_train/images/: 8 images, stored as WIDER_train.zip" in done.stdout
    sources = json.loads((work / "data/raw/sources.json").read_text())
    assert sources["source"] == "local" and sources["local"]["layout"]["split"] == "wider_face_split"

    shutil.rmtree(work / "data")
    (root / "WIDER_val/images").rename(root / "elsewhere")
    failed = run_fetch(work, {"source": "local", "local": {"path": str(root)}})
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith("fetch: error: data.local.path: ") and "WIDER_val/images/" in failed.stderr
    assert not (work / "data/raw").exists() and not list((work / "data").glob(".raw.tmp-*"))



@pytest.mark.slow
def test_dvc_reruns_fetch_when_a_file_under_the_local_path_changes_and_only_then(archives, tmp_path):
    from pipeline_copy import fresh_copy, run, stages_run

    root = unpack(archives, tmp_path / "copy")
    repo = fresh_copy(tmp_path / "facedet", {("data", "source"): "local", ("data", "local", "path"): str(root)})
    assert stages_run(run(["dvc", "repro", "fetch"], repo)) == {"fetch"}
    assert stages_run(run(["dvc", "repro", "fetch"], repo)) == set()
    (tmp_path / "unrelated.txt").write_text("beside the copy, not in it")
    assert json.loads(run(["dvc", "status", "fetch", "--json"], repo)) == {}

    image = next((root / "WIDER_train/images").rglob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"\0")  # same picture, other bytes
    status = json.loads(run(["dvc", "status", "fetch", "--json"], repo))
    assert status == {"fetch": [{"changed deps": {str(root): "modified"}}]}
    assert stages_run(run(["dvc", "repro", "fetch"], repo)) == {"fetch"}
