"""Fetch the real WIDERFace archives (`data.source: widerface`) into data/raw.

Each archive is tried on the mirrors in order; a transfer goes to `<download_dir>/<name>.part`
(kept outside the DVC out), resumes with an HTTP Range request after a cut, is retried with
exponential backoff, and is checked against its pinned size and sha256 before it is renamed to
`<download_dir>/<name>`. A mirror that answers 404 or serves bad bytes is left for the next one.
When every mirror fails, `DownloadError` says in one line which file, which mirrors, the last
error, and that `data.source: embedded` works offline.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from facedet.atomic import atomic_path
from facedet.embedded import EmbeddedParams
from facedet.params import field_range
from facedet.wider import EVAL_TOOLS_ZIP, IMAGES_ZIP, SPLIT_ZIP

# pinned (bytes, sha256) of the archives the mirrors serve (tensorflow_datasets checksums.tsv)
WIDER_ARCHIVES: dict[str, tuple[int | None, str | None]] = {
    IMAGES_ZIP["train"]: (1_465_602_149, "e23b76129c825cafae8be944f65310b2e1ba1c76885afe732f179c41e5ed6d59"),
    IMAGES_ZIP["val"]: (362_752_168, "f9efbd09f28c5d2d884be8c0eaef3967158c866a593fc36ab0413e4b2a58a17a"),
    SPLIT_ZIP: (3_591_642, "c7561e4f5e7a118c249e0a5c5c902b0de90bbf120d7da9fa28d99041f68a8a5c"),
}
CHUNK = 1 << 20
OFFLINE_HINT = "offline? set `data.source: embedded` in params.yaml (generated locally, no network needed)"


@dataclass(frozen=True)
class WiderfaceParams:
    """params.yaml `data.widerface`."""

    mirrors: list[str] = field(default_factory=lambda: [
        "https://huggingface.co/datasets/CUHK-CSE/wider_face/resolve/main/data"])
    eval_tools_url: str = "http://shuoyang1213.me/WIDERFACE/support/eval_script/eval_tools.zip"
    retries: int = field_range(1, 20, default=3)
    timeout_s: float = field_range(1, 3600, default=60)


@dataclass(frozen=True)
class DataParams:
    """params.yaml `data` (the fetch stage)."""

    source: Literal["embedded", "widerface"] = "embedded"
    embedded: EmbeddedParams = field(default_factory=EmbeddedParams)
    widerface: WiderfaceParams = field(default_factory=WiderfaceParams)


class DownloadError(RuntimeError):
    """No mirror delivered a verified archive; the message is one line for the user."""


class _MirrorRefused(Exception):
    """This mirror will not serve the file (404, bad checksum): go to the next, do not retry."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, size: int | None, sha256: str | None) -> str:
    """'' when `path` has the pinned size and sha256, else what is wrong."""
    have = path.stat().st_size
    if size is not None and have != size:
        return f"size {have} bytes, expected {size}"
    if sha256 is not None and sha256_of(path) != sha256:
        return "sha256 mismatch"
    return ""


def _transfer(url: str, part: Path, size: int | None, timeout: float, progress: bool) -> None:
    """Download `url` into `part`, resuming from its current length with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        if have == size:
            return
        part.unlink()
        have = 0
    headers = {"User-Agent": "facedet-fetch/0.1"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part may be complete
            return
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise _MirrorRefused(f"HTTP {err.code} {err.reason}") from None
        raise
    with response:
        resumed = have and getattr(response, "status", None) == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else size
        from tqdm import tqdm

        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=expected, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name.removesuffix(".part"), disable=not progress, leave=False) as bar:
            received = have
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if expected is not None and received < expected:
            raise ConnectionError(f"transfer cut at {received} of {expected} bytes")


def download_file(name: str, urls: list[str], download_dir: str | os.PathLike, size: int | None = None,
                  sha256: str | None = None, retries: int = 3, timeout: float = 60, backoff: float = 1.0,
                  progress: bool = True) -> Path:
    """Download archive `name` from the first of `urls` that delivers it verified.

    The partial file is `<download_dir>/<name>.part` (resumed across attempts and runs); the
    verified file is `<download_dir>/<name>`, reused without downloading when it verifies.
    Raises DownloadError (one line) when all mirrors fail.
    """
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    final = download_dir / name
    if final.exists() and not _verify(final, size, sha256):
        return final
    part = download_dir / f"{name}.part"
    errors: list[str] = []
    for url in urls:
        last = ""
        for attempt in range(retries):
            try:
                _transfer(url, part, size, timeout, progress)
                problem = _verify(part, size, sha256)
                if problem:
                    part.unlink(missing_ok=True)
                    raise _MirrorRefused(problem)
                os.replace(part, final)
                return final
            except _MirrorRefused as err:
                last = str(err)
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', None) or err}"
                if attempt + 1 < retries:
                    time.sleep(backoff * 2 ** attempt)
        errors.append(f"{url} ({last})")
    raise DownloadError(f"could not download {name}: tried {'; '.join(errors)}. {OFFLINE_HINT}")


def mirror_urls(mirrors: list[str], name: str) -> list[str]:
    """'<mirror>/<name>' for every mirror base URL (http(s):// or file://)."""
    return [f"{m.rstrip('/')}/{name}" for m in mirrors]


def fetch_widerface(params: WiderfaceParams, raw_dir: str | os.PathLike, download_dir: str | os.PathLike,
                    progress: bool = True) -> list[Path]:
    """Download and verify the three WIDER archives and eval_tools.zip into `download_dir`, then
    place them into `raw_dir` atomically (hard links where possible). Returns the raw paths."""
    if not params.mirrors:
        raise DownloadError(f"data.widerface.mirrors is empty. {OFFLINE_HINT}")
    done = {}
    for name, (size, sha256) in WIDER_ARCHIVES.items():
        done[name] = download_file(name, mirror_urls(params.mirrors, name), download_dir, size, sha256,
                                   params.retries, params.timeout_s, progress=progress)
    done[EVAL_TOOLS_ZIP] = download_file(EVAL_TOOLS_ZIP, [params.eval_tools_url], download_dir,
                                         retries=params.retries, timeout=params.timeout_s, progress=progress)
    with atomic_path(raw_dir, is_dir=True) as tmp:
        for name, src in done.items():
            try:
                os.link(src, tmp / name)
            except OSError:
                shutil.copyfile(src, tmp / name)
    return [Path(raw_dir) / name for name in done]
