"""Verified, resumable downloads: the file comes from the first of its URLs that delivers the expected
bytes, or not at all.

A transfer goes to `<download_dir>/<name>.part`, resumes with an HTTP Range request after a cut, is
retried with exponential backoff on network errors and 5xx, and is checked (size, sha256, optional
content check) before it is renamed to `<download_dir>/<name>`: a partial or wrong file is never used.
A URL that answers 404, serves an HTML page or bad bytes is left for the next one; Google Drive's
"can't scan this file for viruses" confirm page is followed. Files with no published checksum are
trusted on first use: `HashLock` records the size and sha256 of the first good download in a JSON
file, and every later download must match them. WIDERFace's files and mirrors: facedet.data.wider_fetch.
"""

from __future__ import annotations

import html.parser
import http.client
import http.cookiejar
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from facedet.process.atomic import write_text_atomic
from facedet.process.disk import DiskFullError, human, is_disk_full, require_free_space
from facedet.process.hashing import CHUNK, sha256_of


class Pin(NamedTuple):
    """Expected size (bytes, None if unknown) and sha256 of a download, and where it comes from."""

    size: int | None
    sha256: str
    source: str


DRIVE_URL = "https://drive.google.com/uc?export=download&id={id}"


class DownloadError(RuntimeError):
    """No mirror delivered a verified file; the message is one line for the user."""


class _MirrorRefused(Exception):
    """This mirror will not serve the file (404, HTML page, bad checksum): next mirror, no retry."""


class Downloaded(NamedTuple):
    """Where the verified file is, and the URL it came from ('' if it was already there)."""

    path: Path
    url: str


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

    def __init__(self, path: str | os.PathLike, comment: str = ""):
        """comment: the file's "comment" entry, for whoever opens it (written on `record`)."""
        self.path, self.comment = Path(path), comment

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
        text = json.dumps({"comment": self.comment, "files": entries}, indent=2, sort_keys=True)
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

    def __init__(self, retries: int = 3, timeout: float = 60, backoff: float = 2.0, progress: bool = True,
                 hint: str = ""):
        """hint: appended to every DownloadError (what the user can do instead)."""
        self.retries, self.timeout, self.backoff, self.progress = retries, timeout, backoff, progress
        self.hint = hint
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def download(self, name: str, urls: list[str], download_dir: str | os.PathLike, pin: Pin | None = None,
                 check: Callable[[Path], object] | None = None) -> Downloaded:
        """Download file `name` from the first of `urls` that delivers it verified.

        The partial file is `<download_dir>/<name>.part` (resumed across attempts and runs); the
        verified file is `<download_dir>/<name>`, reused without downloading when it verifies.
        pin: expected size/sha256 (None: accept any bytes that pass `check`); check(path): raises
        (ValueError, FileNotFoundError, zipfile.BadZipFile) when the file's content is wrong.
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
            got = self._from_mirror(name, url, part, pin, check)
            if isinstance(got, str):
                errors.append(f"{url} ({got})")
                continue
            os.replace(part, final)
            return Downloaded(final, url)
        tried = "; ".join(errors) if errors else "no mirror lists it"
        raise DownloadError(f"could not download {name}: tried {tried}." + (f" {self.hint}" if self.hint else ""))

    def _from_mirror(self, name: str, url: str, part: Path, pin: Pin | None,
                     check: Callable[[Path], object] | None) -> Path | str:
        """Download `url` into `part` (resumed, retried `retries` times with backoff) and verify it: the
        verified `part`, or why this mirror failed. DiskFullError (the partial file removed) on a full disk."""
        size, sha = (pin.size, pin.sha256) if pin else (None, None)
        last = ""
        attempt = 0
        while attempt < self.retries:
            attempt += 1
            try:
                resumed_from = self._transfer(url, part, size)
                problem = _verify(part, size, sha) or self._content_problem(part, check)
                if not problem:
                    return part
                part.unlink(missing_ok=True)
                if resumed_from:  # the kept part may hold another mirror's bytes: once more from zero
                    last = f"{problem} after resuming at byte {resumed_from}"
                    attempt -= 1  # not this mirror's fault (at most once: the next try starts at 0)
                    continue
                if pin and problem == "sha256 mismatch":
                    problem += f" (expected {pin.sha256[:12]}..., {pin.source})"
                elif pin and problem.startswith("size"):
                    problem += f" ({pin.source})"
                return problem
            except _MirrorRefused as err:
                return str(err)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                if is_disk_full(err):  # not the network's fault: no retry, and give the space back
                    got = part.stat().st_size if part.exists() else 0
                    part.unlink(missing_ok=True)
                    wanted = f" of {human(size)}" if size else ""
                    raise DiskFullError(f"{part}: disk full after {human(got)}{wanted} of {name}; removed the "
                                        f"partial file: free {human(size or got)} in {part.parent} and run "
                                        "again") from None
                last = f"{type(err).__name__}: {getattr(err, 'reason', None) or err}"
                if attempt < self.retries:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
        return last

    @staticmethod
    def _content_problem(path: Path, check: Callable[[Path], object] | None) -> str:
        if check is None:
            return ""
        try:
            check(path)
        except (FileNotFoundError, ValueError, zipfile.BadZipFile) as err:
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
