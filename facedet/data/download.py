"""Fetch the real WIDERFace archives (`data.source: widerface`) into data/raw, verified.

Each file is tried on the mirrors of `data.widerface.mirrors` in order. A transfer goes to
`<download_dir>/<name>.part` (kept outside the DVC out), resumes with an HTTP Range request after a
cut, is retried with exponential backoff on network errors and 5xx, and is checked (size, sha256,
zip layout) before it is renamed to `<download_dir>/<name>`: a partial or wrong file is never
used. A mirror that answers 404, serves an HTML page or bad bytes is left for the next one;
Google Drive's "can't scan this file for viruses" confirm page is followed.

Checksums: the three WIDER archives and the four ground-truth .mat files are pinned to published
sha256 (`PUBLISHED`). Files with no published checksum (eval_tools.zip) are trusted on first use:
the size and sha256 of the first good download are recorded in a lock file (`HashLock`,
data/widerface.lock.json, committed to git) and every later download must match them.

data/raw (the DVC out) is built from the verified downloads: WIDER_train.zip and WIDER_val.zip with
the same members and bytes but stored uncompressed (no inflate per image in the later stages),
wider_face_split.zip as downloaded, and eval_tools.zip rebuilt deterministically from the four
verified .mat files (members `eval_tools/ground_truth/*.mat`), so it is byte-identical whether the
mirror served the official eval_tools.zip or the four .mat files.
"""

from __future__ import annotations

import hashlib
import html.parser
import http.client
import http.cookiejar
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from facedet.pipeline.atomic import atomic_path, write_text_atomic
from facedet.pipeline.disk import DiskFullError, human, is_disk_full, require_free_space
from facedet.params.sections import Mirror, WiderfaceParams
from facedet.data.wider import (
    EVAL_GT_DIR_MEMBER,
    EVAL_MAT_FILES,
    EVAL_TOOLS_ZIP,
    IMAGES_ZIP,
    SPLIT_ZIP,
    WiderFormatError,
    check_archive,
    eval_mat_members,
    repack_stored,
    zip_bytes,
)


class Pin(NamedTuple):
    """Expected size (bytes, None if unknown) and sha256 of a download, and where it comes from."""

    size: int | None
    sha256: str
    source: str


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
DRIVE_URL = "https://drive.google.com/uc?export=download&id={id}"
CHUNK = 1 << 20
OFFLINE_HINT = "offline? set `data.source: synthetic` in params.yaml (generated locally, no network needed)"


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


class DownloadError(RuntimeError):
    """No mirror delivered a verified file; the message is one line for the user."""


class _MirrorRefused(Exception):
    """This mirror will not serve the file (404, HTML page, bad checksum): next mirror, no retry."""


class Downloaded(NamedTuple):
    path: Path
    url: str


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks (archives are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, size: int | None, sha256: str | None) -> str:
    """'' when `path` has the expected size and sha256, else what is wrong."""
    have = path.stat().st_size
    if size is not None and have != size:
        return f"size {have} bytes, expected {size}"
    if sha256 is not None and sha256_of(path) != sha256:
        return "sha256 mismatch"
    return ""


# ---------------------------------------------------------------------------------------------
# hashes of files with no published checksum (trust on first use)


class HashLock:
    """A JSON file of the sizes and sha256 seen on the first good download of each file that has
    no published checksum. Commit it: teammates and later runs then verify against the same bytes."""

    COMMENT = ("sha256 of WIDERFace downloads with no published checksum, recorded by the fetch stage on the "
               "first good download; later downloads must match. Commit this file; delete an entry to re-pin.")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _entries(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return dict(data["files"])
        except (ValueError, KeyError, TypeError) as err:
            raise DownloadError(f"{self.path}: unreadable hash lock ({err}); fix or delete it") from None

    def get(self, name: str) -> Pin | None:
        entry = self._entries().get(name)
        if entry is None:
            return None
        return Pin(entry.get("bytes"), entry["sha256"], f"first download, recorded in {self.path}")

    def record(self, name: str, path: Path, url: str) -> None:
        entries = self._entries()
        entries[name] = {"bytes": path.stat().st_size, "sha256": sha256_of(path), "first_url": url}
        text = json.dumps({"comment": self.COMMENT, "files": entries}, indent=2, sort_keys=True)
        write_text_atomic(self.path, text + "\n")


# ---------------------------------------------------------------------------------------------
# transfers


class _ConfirmPage(html.parser.HTMLParser):
    """Finds the 'download anyway' link of a Google Drive virus-scan warning page: a form with
    hidden inputs (current Drive) or a link with a `confirm=` token (older Drive)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and "confirm=" in a.get("href", ""):
            self.links.append(a["href"])

    def confirm_url(self, page_url: str) -> str | None:
        for action, inputs in self.forms:
            if "confirm" in inputs:
                return urllib.parse.urljoin(page_url, action or page_url) + "?" + urllib.parse.urlencode(inputs)
        return urllib.parse.urljoin(page_url, self.links[0]) if self.links else None


class Downloader:
    """Resumable, retrying, verifying downloads (one cookie jar, for Google Drive's confirm step)."""

    def __init__(self, retries: int = 3, timeout: float = 60, backoff: float = 2.0, progress: bool = True):
        self.retries, self.timeout, self.backoff, self.progress = retries, timeout, backoff, progress
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def download(self, name: str, urls: list[str], download_dir: str | os.PathLike, pin: Pin | None = None,
                 check: Callable[[Path], object] | None = None) -> Downloaded:
        """Download file `name` from the first of `urls` that delivers it verified.

        The partial file is `<download_dir>/<name>.part` (resumed across attempts and runs); the
        verified file is `<download_dir>/<name>`, reused without downloading when it verifies.
        pin: expected size/sha256 (None: accept any bytes that pass `check`); check(path): raises
        (WiderFormatError, FileNotFoundError, ValueError) when the file's content is wrong.
        Raises DownloadError (one line) when all URLs fail.
        """
        download_dir = Path(download_dir)
        download_dir.mkdir(parents=True, exist_ok=True)
        final = download_dir / name
        size, sha = (pin.size, pin.sha256) if pin else (None, None)
        if final.exists():
            if not _verify(final, size, sha) and not self._content_problem(final, check):
                return Downloaded(final, "")
            final.unlink()
        part = download_dir / f"{name}.part"
        if size is not None:  # the size is known: fail now, not after gigabytes
            have = part.stat().st_size if part.exists() else 0
            require_free_space(download_dir, size - min(have, size), f"downloading {name} ({human(size)})")
        errors: list[str] = []
        for url in urls:
            last = ""
            attempt = 0
            while attempt < self.retries:
                attempt += 1
                try:
                    resumed_from = self._transfer(url, part, size)
                    problem = _verify(part, size, sha) or self._content_problem(part, check)
                    if problem:
                        part.unlink(missing_ok=True)
                        if resumed_from:  # the kept part may hold another mirror's bytes: once more from zero
                            last = f"{problem} after resuming at byte {resumed_from}"
                            attempt -= 1  # not this mirror's fault (at most once: the next try starts at 0)
                            continue
                        if pin and problem == "sha256 mismatch":
                            problem += f" (expected {pin.sha256[:12]}..., {pin.source})"
                        elif pin and problem.startswith("size"):
                            problem += f" ({pin.source})"
                        raise _MirrorRefused(problem)
                    os.replace(part, final)
                    return Downloaded(final, url)
                except _MirrorRefused as err:
                    last = str(err)
                    break
                except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                    if is_disk_full(err):  # not the network's fault: no retry, and give the space back
                        got = part.stat().st_size if part.exists() else 0
                        part.unlink(missing_ok=True)
                        wanted = f" of {human(size)}" if size else ""
                        raise DiskFullError(f"{part}: disk full after {human(got)}{wanted} of {name}; removed the "
                                            f"partial file: free {human(size or got)} in {download_dir} and run "
                                            "again") from None
                    last = f"{type(err).__name__}: {getattr(err, 'reason', None) or err}"
                    if attempt < self.retries:
                        time.sleep(self.backoff * 2 ** (attempt - 1))
            errors.append(f"{url} ({last})")
        tried = "; ".join(errors) if errors else "no mirror lists it"
        raise DownloadError(f"could not download {name}: tried {tried}. {OFFLINE_HINT}")

    @staticmethod
    def _content_problem(path: Path, check: Callable[[Path], object] | None) -> str:
        if check is None:
            return ""
        try:
            check(path)
        except (WiderFormatError, FileNotFoundError, ValueError, zipfile.BadZipFile) as err:
            return f"not the expected content: {err}"
        return ""

    def _transfer(self, url: str, part: Path, size: int | None, confirmed: bool = False) -> int:
        """Download `url` into `part`, resuming from its current length with a Range request.

        Returns the byte offset it resumed from (0: written from the start)."""
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have >= size:
            if have == size:
                return have
            part.unlink()
            have = 0
        headers = {"User-Agent": "facedet-fetch/0.1"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = self.opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # nothing left to send: the part may be complete; verify decides
                return have
            if 400 <= err.code < 500 and err.code not in (408, 429):
                raise _MirrorRefused(f"HTTP {err.code} {err.reason}") from None
            raise
        except urllib.error.URLError as err:
            if isinstance(err.reason, FileNotFoundError):  # file:// mirror without this file
                raise _MirrorRefused(f"no such file: {err.reason.filename or url}") from None
            raise
        with response:
            if "text/html" in (response.headers.get("Content-Type") or "").lower():
                page = response.read(2 << 20).decode("utf-8", "replace")
                parser = _ConfirmPage()
                parser.feed(page)
                target = None if confirmed else parser.confirm_url(response.geturl())
                if target is None:
                    raise _MirrorRefused("served an HTML page, not the file (quota, login or error page?)")
                return self._transfer(target, part, size, confirmed=True)
            status = getattr(response, "status", None) or getattr(response, "code", None)
            start = 0
            if have and status == 206:
                start = _content_range_start(response.headers.get("Content-Range"))
                if start != have:
                    part.unlink(missing_ok=True)
                    raise ConnectionError(f"server resumed at byte {start}, asked for {have}: restarting")
            length = response.headers.get("Content-Length")
            expected = start + int(length) if length is not None else size
            from tqdm import tqdm

            with open(part, "ab" if start else "wb") as out, \
                    tqdm(total=expected, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=part.name.removesuffix(".part"), disable=not self.progress, leave=False) as bar:
                received = start
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if expected is not None and received < expected:
                raise ConnectionError(f"transfer cut at {received} of {expected} bytes")
        return start


def _content_range_start(header: str | None) -> int:
    """First byte of a 'bytes START-END/TOTAL' Content-Range header (-1 if absent or malformed)."""
    try:
        return int(header.split()[1].split("-")[0]) if header else -1
    except (IndexError, ValueError):
        return -1


def download_file(name: str, urls: list[str], download_dir: str | os.PathLike, size: int | None = None,
                  sha256: str | None = None, retries: int = 3, timeout: float = 60, backoff: float = 1.0,
                  progress: bool = True) -> Path:
    """Download `name` from the first of `urls` that delivers it with `size` and `sha256`
    (see `Downloader.download`). Returns the verified path."""
    pin = Pin(size, sha256, "given") if sha256 or size else None
    return Downloader(retries, timeout, backoff, progress).download(name, urls, download_dir, pin).path


def mirror_urls(mirrors: list[str], name: str) -> list[str]:
    """'<mirror>/<name>' for every mirror base URL (http(s):// or file://)."""
    return [f"{m.rstrip('/')}/{name}" for m in mirrors]


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
    downloader = Downloader(params.retries, params.timeout_s, params.backoff_s, progress)
    lock = HashLock(lock_path)
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
