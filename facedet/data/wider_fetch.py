"""Fetch the real WIDERFace archives (`data.source: widerface`) into data/raw, verified: the files,
their published checksums, the mirrors of `data.widerface.mirrors`, and how data/raw is built from
the verified downloads (the download itself: facedet.data.download).

Each file is tried on the mirrors in order. The three WIDER archives and the four ground-truth .mat
files are pinned to published sha256 (`PUBLISHED`). Files with no published checksum (eval_tools.zip)
are trusted on first use, recorded in data/widerface.lock.json (`HashLock`, committed to git).

data/raw (the DVC out) is built from the verified downloads: WIDER_train.zip and WIDER_val.zip with
the same members and bytes but stored uncompressed (no inflate per image in the later stages),
wider_face_split.zip as downloaded, and eval_tools.zip rebuilt deterministically from the four
verified .mat files (members `eval_tools/ground_truth/*.mat`), so it is byte-identical whether the
mirror served the official eval_tools.zip or the four .mat files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from facedet.data.download import DRIVE_URL, Downloaded, Downloader, DownloadError, HashLock, Pin
from facedet.data.wider_archive import (
    EVAL_GT_DIR_MEMBER,
    EVAL_TOOLS_ZIP,
    IMAGES_ZIP,
    SPLIT_ZIP,
    check_archive,
    eval_mat_members,
)
from facedet.data.wider_gt import WiderFormatError
from facedet.data.wider_mat import EVAL_MAT_FILES
from facedet.params.sections import Mirror, WiderfaceParams
from facedet.process.atomic import atomic_path
from facedet.process.disk import require_free_space
from facedet.process.zips import repack_stored, zip_bytes

_TFDS = "published: tensorflow_datasets wider_face checksums.tsv"
_MATS = "published: clibdev/WiderFace-Evaluation README (official ground truth)"
PUBLISHED: dict[str, Pin] = {
    IMAGES_ZIP["train"]: Pin(1_465_602_149, "e23b76129c825cafae8be944f65310b2e1ba1c76885afe732f179c41e5ed6d59", _TFDS),
    IMAGES_ZIP["val"]: Pin(362_752_168, "f9efbd09f28c5d2d884be8c0eaef3967158c866a593fc36ab0413e4b2a58a17a", _TFDS),
    SPLIT_ZIP: Pin(3_591_642, "c7561e4f5e7a118c249e0a5c5c902b0de90bbf120d7da9fa28d99041f68a8a5c", _TFDS),
    EVAL_MAT_FILES["all"]: Pin(None, "1dfe6a9853950f9dde256b5e8bb75d8f272e6bc02a15ae1968f5a9b883f458cb", _MATS),
    EVAL_MAT_FILES["easy"]: Pin(None, "c2fb672d16f75653eb89fb8bc437a7d060896a71cd7a65c1a5a3e4479024099c", _MATS),
    EVAL_MAT_FILES["medium"]: Pin(None, "4a031970bc132cef5cfacd05068aabcf4fe15d4a31a1e9f4f00eb134fdf449c1", _MATS),
    EVAL_MAT_FILES["hard"]: Pin(None, "bb1af19dc5bc4dd9517dd8ae8096326c68175f2c3411763bdd4f23fa98638b78", _MATS),
}
ARCHIVES = (IMAGES_ZIP["train"], IMAGES_ZIP["val"], SPLIT_ZIP)
MAT_FILES = tuple(EVAL_MAT_FILES.values())
OFFLINE_HINT = "offline? set `data.source: synthetic` in params.yaml (generated locally, no network needed)"
LOCK_COMMENT = ("sha256 of WIDERFace downloads with no published checksum, recorded by the fetch stage on the "
                "first good download; later downloads must match. Commit this file; delete an entry to re-pin.")


def mirror_url(mirror: Mirror, file: str) -> str | None:
    """Where `mirror` serves `file`, or None if it does not list it (a `base_url` mirror without
    `files` serves the three WIDER archives and eval_tools.zip)."""
    if file in mirror.urls:
        return mirror.urls[file]
    if file in mirror.google_drive:
        return DRIVE_URL.format(id=mirror.google_drive[file])
    if mirror.base_url and file in (mirror.files or (*ARCHIVES, EVAL_TOOLS_ZIP)):
        return f"{mirror.base_url.rstrip('/')}/{file}"
    return None


# ---------------------------------------------------------------------------------------------
# the fetch stage


def _mats_of_eval_tools(path: Path, pins: dict[str, Pin]) -> dict[str, bytes]:
    """The four ground-truth .mat files inside an eval_tools.zip, each checked against its pin."""
    check_archive(path, EVAL_TOOLS_ZIP)
    with zipfile.ZipFile(path) as archive:
        mats = {name: archive.read(member) for name, member in eval_mat_members(archive, str(path)).items()}
    for name, data in mats.items():
        pin = pins.get(name)
        if pin and hashlib.sha256(data).hexdigest() != pin.sha256:
            raise WiderFormatError(f"{path}: {name} sha256 mismatch ({pin.source})")
    return mats


def _said(name: str, got: Downloaded, pin: Pin | None, lock: HashLock) -> str:
    where = f"downloaded from {got.url}" if got.url else f"already in {got.path.parent}"
    return f"{name}: {where}, verified ({pin.source if pin else f'sha256 pinned now in {lock.path}'})"


def fetch_eval_ground_truth(mirrors: list[Mirror], downloader: Downloader, download_dir: str | os.PathLike,
                            lock: HashLock, pins: dict[str, Pin] = PUBLISHED,
                            report: Callable[[str], object] = lambda line: None) -> dict[str, bytes]:
    """The four verified ground-truth .mat files (name -> bytes), from the first mirror that serves
    eval_tools.zip (hash trusted on first use, recorded in `lock`) or all four .mat files."""
    errors = []
    for mirror in mirrors:
        try:
            if (url := mirror_url(mirror, EVAL_TOOLS_ZIP)) is not None:
                pin = lock.get(EVAL_TOOLS_ZIP)
                got = downloader.download(EVAL_TOOLS_ZIP, [url], download_dir, pin,
                                          check=lambda p: _mats_of_eval_tools(p, pins))
                if pin is None:
                    lock.record(EVAL_TOOLS_ZIP, got.path, got.url)
                report(_said(EVAL_TOOLS_ZIP, got, pin, lock) + "; its four .mat files match their published sha256")
                return _mats_of_eval_tools(got.path, pins)
            urls = {name: mirror_url(mirror, name) for name in MAT_FILES}
            if all(urls.values()):
                mats = {}
                for name, mat_url in urls.items():
                    pin = pins.get(name) or lock.get(name)
                    got = downloader.download(name, [mat_url], download_dir, pin)
                    if pin is None:
                        lock.record(name, got.path, got.url)
                    report(_said(name, got, pin, lock))
                    mats[name] = got.path.read_bytes()
                return mats
        except DownloadError as err:
            errors.append(f"{mirror.label}: {str(err).removesuffix(OFFLINE_HINT).strip().rstrip('.')}")
    tried = "; ".join(errors) if errors else "no mirror lists eval_tools.zip or the four .mat files"
    raise DownloadError(f"could not get the evaluation ground truth: {tried}. {OFFLINE_HINT}")


def fetch_widerface(params: WiderfaceParams, raw_dir: str | os.PathLike, download_dir: str | os.PathLike,
                    lock_path: str | os.PathLike, progress: bool = True, pins: dict[str, Pin] = PUBLISHED,
                    report: Callable[[str], object] = lambda line: None) -> list[Path]:
    """Download and verify WIDER_train.zip, WIDER_val.zip, wider_face_split.zip and the evaluation
    ground truth into `download_dir`, then build `raw_dir` atomically: the two image archives with
    the same members stored uncompressed (`repack_stored`: later stages read each JPEG without
    inflating it), wider_face_split.zip as downloaded (a hard link where possible), and a
    deterministic eval_tools.zip of the four .mat files. report(line) is told where each file came
    from. Returns the raw paths. Raises DownloadError (one line) when a file cannot be had."""
    mirrors = params.mirror_list()
    if not mirrors:
        raise DownloadError(f"data.widerface.mirrors is empty. {OFFLINE_HINT}")
    downloader = Downloader(params.retries, params.timeout_s, params.backoff_s, progress, hint=OFFLINE_HINT)
    lock = HashLock(lock_path, LOCK_COMMENT)
    done: dict[str, Path] = {}
    for name in ARCHIVES:
        urls = [u for m in mirrors if (u := mirror_url(m, name)) is not None]
        pin = pins.get(name) or lock.get(name)
        got = downloader.download(name, urls, download_dir, pin, check=lambda p, n=name: check_archive(p, n))
        if pin is None:
            lock.record(name, got.path, got.url)
        report(_said(name, got, pin, lock))
        done[name] = got.path
    mats = fetch_eval_ground_truth(mirrors, downloader, download_dir, lock, pins, report)
    require_free_space(raw_dir, sum(path.stat().st_size for path in done.values()),
                       f"building {raw_dir} from the verified archives")
    with atomic_path(raw_dir, is_dir=True) as tmp:
        write_raw_archives(tmp, done, mats, progress)
    return [Path(raw_dir) / name for name in (*done, EVAL_TOOLS_ZIP)]


def write_raw_archives(raw_dir: Path, archives: dict[str, Path], mats: dict[str, bytes] | None,
                       progress: bool = True) -> None:
    """Put verified official archives into `raw_dir` as data/raw holds them: the image archives
    re-stored uncompressed (`repack_stored`: later stages read each JPEG without inflating it),
    wider_face_split.zip as is (a hard link where possible), and, with `mats`, a deterministic
    eval_tools.zip of the four ground-truth .mat files (name -> bytes)."""
    from tqdm import tqdm

    for name, src in archives.items():
        if name in IMAGES_ZIP.values():
            with zipfile.ZipFile(src) as archive:
                total = len(archive.infolist())
            with tqdm(total=total, desc=f"fetch: storing {name} uncompressed", unit="file",
                      disable=not progress, leave=False) as bar:
                repack_stored(src, raw_dir / name, progress=bar.update)
            continue
        try:
            os.link(src, raw_dir / name)
        except OSError:
            shutil.copyfile(src, raw_dir / name)
    if mats is not None:
        eval_zip = zip_bytes({f"{EVAL_GT_DIR_MEMBER}/{name}": data for name, data in mats.items()}, compress=True)
        (raw_dir / EVAL_TOOLS_ZIP).write_bytes(eval_zip)
