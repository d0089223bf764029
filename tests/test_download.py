"""Downloading real WIDERFace: a user fetches from mirrors and gets a verified archive even when a
transfer is cut (Range resume) or a mirror is down; offline, one clear line instead of a traceback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facedet.download import DownloadError, download_file, mirror_urls

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = bytes(range(256)) * 400  # 100 kB stand-in for WIDER_val.zip
SHA = hashlib.sha256(ARCHIVE).hexdigest()


class Mirror(BaseHTTPRequestHandler):
    """/missing/*: 404; /cut/*: the first full transfer stops halfway; /ok/*: Range-aware; /bad/*: wrong bytes."""

    requests: list[tuple[str, str | None]] = []
    cut_done = False

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        Mirror.requests.append((self.path, self.headers.get("Range")))
        kind = self.path.split("/")[1]
        if kind == "missing":
            self.send_error(404)
            return
        body = ARCHIVE if kind != "bad" else ARCHIVE[::-1]
        start = 0
        if self.headers.get("Range") and kind != "bad":
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if kind == "cut" and not Mirror.cut_done:
            Mirror.cut_done = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    Mirror.requests, Mirror.cut_done = [], False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(urls, tmp_path, **kw):
    return download_file("WIDER_val.zip", urls, tmp_path / "downloads", size=len(ARCHIVE), sha256=SHA,
                         retries=kw.pop("retries", 3), timeout=5, backoff=0, progress=False, **kw)


def test_a_cut_transfer_resumes_with_a_range_request(server, tmp_path):
    path = fetch(mirror_urls([f"{server}/cut"], "WIDER_val.zip"), tmp_path)
    assert path.read_bytes() == ARCHIVE and path.name == "WIDER_val.zip"
    assert Mirror.requests == [("/cut/WIDER_val.zip", None), ("/cut/WIDER_val.zip", f"bytes={len(ARCHIVE) // 2}-")]
    assert not (tmp_path / "downloads/WIDER_val.zip.part").exists()


def test_a_missing_file_falls_over_to_the_next_mirror(server, tmp_path):
    path = fetch(mirror_urls([f"{server}/missing", f"{server}/ok/"], "WIDER_val.zip"), tmp_path)
    assert path.read_bytes() == ARCHIVE
    assert [p for p, _ in Mirror.requests] == ["/missing/WIDER_val.zip", "/ok/WIDER_val.zip"]  # 404: no retry


def test_wrong_bytes_are_rejected_and_never_renamed_into_place(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        fetch([f"{server}/bad"], tmp_path)
    assert "sha256 mismatch" in str(err.value) and "data.source: embedded" in str(err.value)
    assert not (tmp_path / "downloads/WIDER_val.zip").exists()
    assert fetch([f"{server}/bad", f"{server}/ok"], tmp_path).read_bytes() == ARCHIVE


def test_a_verified_download_is_reused_and_file_mirrors_work(server, tmp_path):
    local = tmp_path / "mirror"
    local.mkdir()
    (local / "WIDER_val.zip").write_bytes(ARCHIVE)
    path = fetch(mirror_urls([local.as_uri()], "WIDER_val.zip"), tmp_path)
    assert path.read_bytes() == ARCHIVE
    os.utime(path, (1, 1))
    fetch([f"{server}/ok"], tmp_path)
    assert Mirror.requests == [] and path.stat().st_mtime == 1


def test_offline_fetch_fails_with_one_clear_line(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "data:\n  source: widerface\n  embedded: {seed: 1}\n  widerface:\n"
        "    mirrors: [http://127.0.0.1:9/a, http://127.0.0.1:9/b]\n"
        "    eval_tools_url: http://127.0.0.1:9/eval_tools.zip\n    retries: 1\n    timeout_s: 2\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    line = lines[0]
    assert "WIDER_train.zip" in line and "127.0.0.1:9/a" in line and "127.0.0.1:9/b" in line
    assert "refused" in line.lower() and "data.source: embedded" in line
    assert not (tmp_path / "data/raw").exists()
