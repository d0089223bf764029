"""Downloading real WIDERFace: a user fetches from mirrors and gets verified archives even when a
transfer is cut (Range resume), a server ignores Range, errors, serves a wrong byte or an HTML page,
or a mirror is down; Google Drive's confirm page is followed; files with no published hash are pinned
on first download; offline, one clear line instead of a traceback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facedet.data.download import DRIVE_URL, Downloader, DownloadError, HashLock, Pin
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.wider_archive import EVAL_TOOLS_ZIP, WiderArchive
from facedet.data.wider_fetch import ARCHIVES, MAT_FILES, OFFLINE_HINT, fetch_widerface, mirror_url
from facedet.params.loader import ParamsError, build
from facedet.params.sections import MIRROR_FILES, Mirror, SyntheticParams, WiderfaceParams

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = bytes(range(256)) * 400  # 100 kB stand-in for WIDER_val.zip
SHA = hashlib.sha256(ARCHIVE).hexdigest()


class FaultyMirror(BaseHTTPRequestHandler):
    """A mirror whose first path part says how it misbehaves:

    ok: Range-aware; missing: 404; cut: the first transfer stops halfway; norange: ignores Range;
    flaky: the first request gets 500; error: always 500; bad: wrong bytes; onebyte: one byte
    flipped; html: a 200 HTML error page; uc: a Google Drive virus-scan confirm page whose form
    leads to drivedl, which serves the file only with the cookie and confirm token.
    """

    files: dict[str, bytes] = {}
    requests: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        FaultyMirror.requests.append((self.path, self.headers.get("Range")))
        url = urllib.parse.urlsplit(self.path)
        kind, _, name = url.path.lstrip("/").partition("/")
        query = dict(urllib.parse.parse_qsl(url.query))
        first = kind not in FaultyMirror.seen
        FaultyMirror.seen.add(kind)
        if kind == "uc":
            page = (f'<html><body>Google Drive can\'t scan this file for viruses.<form id="download-form" '
                    f'action="/drivedl" method="get"><input type="submit" value="Download anyway">'
                    f'<input type="hidden" name="id" value="{query["id"]}"><input type="hidden" name="export" '
                    f'value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" '
                    f'name="uuid" value="1234-abcd"></form></body></html>').encode()
            return self._send(200, page, "text/html; charset=utf-8", cookie="download_warning=yes")
        if kind == "drivedl":
            if query.get("confirm") != "t" or "download_warning=yes" not in (self.headers.get("Cookie") or ""):
                return self._send(403, b"no", "text/plain")
            name = query["id"]
        if kind == "html":
            return self._send(200, b"<html><body>Quota exceeded</body></html>", "text/html")
        if kind == "missing" or name not in FaultyMirror.files:
            return self.send_error(404)
        if kind == "error" or (kind == "flaky" and first):
            return self.send_error(500)
        body = FaultyMirror.files[name]
        if kind == "bad":
            body = body[::-1]
        elif kind == "onebyte":
            body = body[:100] + bytes([body[100] ^ 1]) + body[101:]
        start = 0
        if self.headers.get("Range") and kind != "norange":
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if kind == "cut" and first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def _send(self, code, body, content_type, cookie=None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if cookie:
            self.send_header("Set-Cookie", f"{cookie}; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server():
    FaultyMirror.files, FaultyMirror.requests, FaultyMirror.seen = {"WIDER_val.zip": ARCHIVE}, [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FaultyMirror)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(urls, tmp_path, **kw):
    """WIDER_val.zip as the fetch stage downloads it (its errors end with the offline hint)."""
    downloader = Downloader(kw.pop("retries", 3), timeout=5, backoff=0, progress=False, hint=OFFLINE_HINT)
    return downloader.download("WIDER_val.zip", urls, tmp_path / "downloads", Pin(len(ARCHIVE), SHA, "given")).path


def test_a_cut_transfer_resumes_with_a_range_request(server, tmp_path):
    path = fetch([f"{server}/cut/WIDER_val.zip"], tmp_path)
    assert path.read_bytes() == ARCHIVE and path.name == "WIDER_val.zip"
    half = f"bytes={len(ARCHIVE) // 2}-"
    assert FaultyMirror.requests == [("/cut/WIDER_val.zip", None), ("/cut/WIDER_val.zip", half)]
    assert not (tmp_path / "downloads/WIDER_val.zip.part").exists()


def test_a_server_that_ignores_range_is_read_again_from_the_start(server, tmp_path):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads/WIDER_val.zip.part").write_bytes(ARCHIVE[:1000])
    assert fetch([f"{server}/norange/WIDER_val.zip"], tmp_path).read_bytes() == ARCHIVE
    assert FaultyMirror.requests == [("/norange/WIDER_val.zip", "bytes=1000-")]


def test_a_part_left_by_another_mirror_with_other_bytes_is_redone_from_zero(server, tmp_path):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads/WIDER_val.zip.part").write_bytes(b"x" * 1000)  # not the start of ARCHIVE
    assert fetch([f"{server}/ok/WIDER_val.zip"], tmp_path).read_bytes() == ARCHIVE
    assert FaultyMirror.requests == [("/ok/WIDER_val.zip", "bytes=1000-"), ("/ok/WIDER_val.zip", None)]


def test_server_errors_are_retried_then_the_next_mirror_is_tried(server, tmp_path):
    assert fetch([f"{server}/flaky/WIDER_val.zip"], tmp_path).read_bytes() == ARCHIVE
    assert len(FaultyMirror.requests) == 2
    FaultyMirror.requests.clear()
    (tmp_path / "downloads/WIDER_val.zip").unlink()
    path = fetch([f"{server}/error/WIDER_val.zip", f"{server}/ok/WIDER_val.zip"], tmp_path, retries=2)
    assert path.read_bytes() == ARCHIVE
    assert [p for p, _ in FaultyMirror.requests] == ["/error/WIDER_val.zip"] * 2 + ["/ok/WIDER_val.zip"]


def test_a_missing_file_falls_over_to_the_next_mirror(server, tmp_path):
    path = fetch([f"{server}/missing/WIDER_val.zip", f"{server}/ok/WIDER_val.zip"], tmp_path)
    assert path.read_bytes() == ARCHIVE
    assert [p for p, _ in FaultyMirror.requests] == ["/missing/WIDER_val.zip", "/ok/WIDER_val.zip"]  # 404: no retry


@pytest.mark.parametrize("kind, problem", [("bad", "sha256 mismatch"), ("onebyte", "sha256 mismatch"),
                                           ("html", "HTML page")])
def test_wrong_bytes_are_rejected_and_never_renamed_into_place(server, tmp_path, kind, problem):
    with pytest.raises(DownloadError) as err:
        fetch([f"{server}/{kind}/WIDER_val.zip"], tmp_path)
    message = str(err.value)
    assert problem in message and "WIDER_val.zip" in message and "data.source: synthetic" in message
    assert "\n" not in message and len(FaultyMirror.requests) == 1  # not retried: the mirror is wrong, not flaky
    assert list((tmp_path / "downloads").iterdir()) == []  # neither the file nor a part
    assert fetch([f"{server}/{kind}/WIDER_val.zip", f"{server}/ok/WIDER_val.zip"], tmp_path).read_bytes() == ARCHIVE


def test_google_drive_ids_and_the_virus_scan_confirm_page(server, tmp_path):
    drive = Mirror(name="drive", google_drive={"WIDER_val.zip": "abc123"})
    assert mirror_url(drive, "WIDER_val.zip") == DRIVE_URL.format(id="abc123") and mirror_url(drive, "WIDER_train.zip") is None
    FaultyMirror.files["drive-id-1"] = ARCHIVE
    assert fetch([f"{server}/uc?export=download&id=drive-id-1"], tmp_path).read_bytes() == ARCHIVE
    confirmed = urllib.parse.urlsplit(FaultyMirror.requests[1][0])
    assert confirmed.path == "/drivedl" and dict(urllib.parse.parse_qsl(confirmed.query))["uuid"] == "1234-abcd"


def test_a_verified_download_is_reused_and_file_mirrors_work(server, tmp_path):
    local = tmp_path / "mirror"
    local.mkdir()
    (local / "WIDER_val.zip").write_bytes(ARCHIVE)
    path = fetch([(tmp_path / "nowhere/WIDER_val.zip").as_uri(), (local / "WIDER_val.zip").as_uri()], tmp_path)
    assert path.read_bytes() == ARCHIVE
    os.utime(path, (1, 1))
    fetch([f"{server}/ok"], tmp_path)
    assert FaultyMirror.requests == [] and path.stat().st_mtime == 1


def test_mirrors_are_base_urls_or_mappings_checked_like_any_param():
    params = build(WiderfaceParams, {"mirrors": [
        "file:///srv/wider",
        {"name": "official", "urls": {"eval_tools.zip": "http://x/eval_tools.zip"}},
        {"name": "gt", "base_url": "https://gh/dl", "files": list(MAT_FILES)}]}, "data.widerface")
    local, official, gt = params.mirror_list()
    assert mirror_url(local, "WIDER_train.zip") == "file:///srv/wider/WIDER_train.zip"
    assert mirror_url(official, "eval_tools.zip") == "http://x/eval_tools.zip"
    assert mirror_url(official, "WIDER_val.zip") is None
    assert mirror_url(gt, "wider_hard_val.mat") == "https://gh/dl/wider_hard_val.mat"
    assert mirror_url(gt, "eval_tools.zip") is None
    with pytest.raises(ParamsError, match="unknown file 'WIDER_tran.zip'"):
        build(WiderfaceParams, {"mirrors": [{"name": "m", "urls": {"WIDER_tran.zip": "http://x"}}]}, "data.widerface")
    with pytest.raises(ParamsError, match="data.widerface.mirrors\\[0\\].bse_url"):
        build(WiderfaceParams, {"mirrors": [{"bse_url": "http://x"}]}, "data.widerface")


def test_a_mirror_may_list_exactly_the_files_fetch_downloads():
    assert sorted(MIRROR_FILES) == sorted([*ARCHIVES, EVAL_TOOLS_ZIP, *MAT_FILES])


# ---------------------------------------------------------------------------------------------
# the whole fetch: three archives + evaluation ground truth into data/raw


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """Tiny official-layout archives, the four .mat files, and pins for them."""
    root = tmp_path_factory.mktemp("wider")
    write_synthetic_dataset(SyntheticParams(seed=1, train_images=3, val_images=2, min_side=48, max_side=64,
                                          max_faces=2), root)
    files = {p.name: p.read_bytes() for p in root.glob("*.zip")}
    for name in ("WIDER_train.zip", "WIDER_val.zip"):  # as served: deflated, with directory entries
        buf = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(files[name])) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
            dst.writestr(src.namelist()[0].rsplit("/", 1)[0] + "/", b"")
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info))
        files[name] = buf.getvalue()
    with zipfile.ZipFile(root / "eval_tools.zip") as zf:
        mats = {Path(n).name: zf.read(n) for n in zf.namelist()}
    # the official eval_tools.zip also holds the MATLAB scripts
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("eval_tools/wider_eval.m", "% evaluation script\n")
        for name, data in mats.items():
            zf.writestr(f"eval_tools/ground_truth/{name}", data)
    files["eval_tools.zip"] = buf.getvalue()
    pins = {name: Pin(len(data), hashlib.sha256(data).hexdigest(), "test")
            for name, data in {**files, **mats}.items() if name != "eval_tools.zip"}
    return files, mats, pins


def run_fetch(tmp_path, mirrors, pins, raw="raw", **kw):
    params = WiderfaceParams(mirrors=mirrors, retries=1, timeout_s=5, backoff_s=0)
    return fetch_widerface(params, tmp_path / raw, tmp_path / "downloads", tmp_path / "widerface.lock.json",
                           progress=False, pins=pins, **kw)


def test_fetch_builds_data_raw_and_pins_eval_tools_on_first_download(server, tmp_path, wider):
    files, mats, pins = wider
    FaultyMirror.files = dict(files)
    mirrors = [Mirror(name="down", base_url=f"{server}/missing"),
               Mirror(name="official", urls={"eval_tools.zip": f"{server}/ok/eval_tools.zip"}),
               Mirror(name="hf", base_url=f"{server}/ok", files=["WIDER_train.zip", "WIDER_val.zip",
                                                                   "wider_face_split.zip"])]
    said = []
    paths = run_fetch(tmp_path, mirrors, pins, report=said.append)
    assert said[0] == f"WIDER_train.zip: downloaded from {server}/ok/WIDER_train.zip, verified (test)"
    assert said[3].startswith(f"eval_tools.zip: downloaded from {server}/ok/eval_tools.zip, verified (sha256 pinned")
    assert sorted(p.name for p in paths) == ["WIDER_train.zip", "WIDER_val.zip", "eval_tools.zip",
                                             "wider_face_split.zip"]
    assert (tmp_path / "raw/wider_face_split.zip").read_bytes() == files["wider_face_split.zip"]
    for name in ("WIDER_train.zip", "WIDER_val.zip"):  # same members and bytes, stored: no inflate per image
        with zipfile.ZipFile(io.BytesIO(files[name])) as served, zipfile.ZipFile(tmp_path / "raw" / name) as raw:
            assert raw.namelist() == served.namelist() and len(raw.namelist()) > 1
            assert {i.compress_type for i in raw.infolist()} == {zipfile.ZIP_STORED}
            assert all(raw.read(n) == served.read(n) for n in served.namelist())
    with zipfile.ZipFile(tmp_path / "raw/eval_tools.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"eval_tools/ground_truth/{m}" for m in mats)
    archive = WiderArchive(tmp_path / "raw")
    assert len(archive.eval_ground_truth()) == 2 and len(archive.records("train")) == 3
    lock = json.loads((tmp_path / "widerface.lock.json").read_text())
    assert list(lock["files"]) == ["eval_tools.zip"]
    assert lock["files"]["eval_tools.zip"]["sha256"] == hashlib.sha256(files["eval_tools.zip"]).hexdigest()
    assert HashLock(tmp_path / "widerface.lock.json").get("eval_tools.zip").size == len(files["eval_tools.zip"])

    # a teammate's download of a different eval_tools.zip is refused: the lock holds the first one
    with zipfile.ZipFile(io.BytesIO(files["eval_tools.zip"])) as zf, io.BytesIO() as buf:
        with zipfile.ZipFile(buf, "w") as other:
            for info in zf.infolist():
                other.writestr(info, zf.read(info))
            other.writestr("eval_tools/README", "re-issued")
        FaultyMirror.files["eval_tools.zip"] = buf.getvalue()
    (tmp_path / "downloads/eval_tools.zip").unlink()
    with pytest.raises(DownloadError, match=r"eval_tools.zip.*(sha256 mismatch|expected).*widerface.lock.json"):
        run_fetch(tmp_path, mirrors, pins, raw="raw2")
    assert not (tmp_path / "raw2").exists()


def test_eval_ground_truth_from_the_four_mat_files_gives_the_same_archive(server, tmp_path, wider):
    files, mats, pins = wider
    FaultyMirror.files = dict(files)
    local = tmp_path / "gt"
    local.mkdir()
    for name, data in mats.items():
        (local / name).write_bytes(data)
    archives = Mirror(name="hf", base_url=f"{server}/ok", files=["WIDER_train.zip", "WIDER_val.zip",
                                                                 "wider_face_split.zip"])
    run_fetch(tmp_path / "a", [archives, Mirror(name="gt", base_url=local.as_uri(), files=list(MAT_FILES))], pins)
    run_fetch(tmp_path / "b", [archives, Mirror(name="official", base_url=f"{server}/ok", files=["eval_tools.zip"])],
              pins)
    for name in ("eval_tools.zip", "WIDER_train.zip", "WIDER_val.zip"):  # deterministic, whatever the route
        assert (tmp_path / "a/raw" / name).read_bytes() == (tmp_path / "b/raw" / name).read_bytes(), name
    assert not (tmp_path / "a/widerface.lock.json").exists()  # the .mat files have published hashes


def test_an_archive_with_a_dotdot_member_is_refused_with_one_line(server, tmp_path, wider):
    files, mats, pins = wider
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in mats.items():
            zf.writestr(f"eval_tools/ground_truth/{name}", data)
        zf.writestr("eval_tools/../../evil.sh", "rm -rf ~")
    FaultyMirror.files = {**files, "eval_tools.zip": buf.getvalue()}
    with pytest.raises(DownloadError) as err:
        run_fetch(tmp_path, [Mirror(name="m", base_url=f"{server}/ok")], pins)
    message = str(err.value)
    assert "\n" not in message and "eval_tools.zip" in message and "unsafe member name" in message
    assert "'eval_tools/../../evil.sh'" in message
    assert not (tmp_path / "raw").exists() and not (tmp_path / "widerface.lock.json").exists()
    assert not (tmp_path / "downloads/eval_tools.zip").exists()


def test_offline_fetch_fails_with_one_clear_line(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "data:\n  source: widerface\n  synthetic: {seed: 1}\n  widerface:\n"
        "    mirrors: [http://127.0.0.1:9/a, {name: b, base_url: 'http://127.0.0.1:9/b'}]\n"
        "    retries: 1\n    timeout_s: 2\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    line = lines[0]
    assert "WIDER_train.zip" in line and "127.0.0.1:9/a" in line and "127.0.0.1:9/b" in line
    assert "refused" in line.lower() and "data.source: synthetic" in line
    assert not (tmp_path / "data/raw").exists()
