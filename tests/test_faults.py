"""What a user sees when things go wrong (docs/faults.md): every fault
found by probing a fresh clone, and every behaviour the probe found already right, ends in one line on
stderr naming the file (and line, the param, the path, the space needed), exit status 1, and no partial
output; a killed stage leaves nothing that survives its next run."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.wider_archive import IMAGES_ZIP, image_member
from facedet.params.sections import SyntheticParams

from pipeline_copy import SMALL, fresh_copy, run

REPO = Path(__file__).resolve().parents[1]
TINY_RAW = SyntheticParams(seed=3, train_images=8, val_images=4, min_side=96, max_side=160, max_faces=3)


# ---------------------------------------------------------------------------------------------
# helpers: a project directory (params.yaml, configs/, data/) where stages run as `python -m stages.X`


def project(tmp_path: Path, params: dict | None = None, raw: SyntheticParams | None = TINY_RAW) -> Path:
    """A directory with the repository's params.yaml (updated with `params`: {"filter": {...}}),
    configs/, a .gitignore and (unless raw is None) a synthetic data/raw."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    values = yaml.safe_load((REPO / "params.yaml").read_text())
    values["filter"]["workers"] = values["shard"]["workers"] = 1
    for section, changes in (params or {}).items():
        values[section].update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    if raw is not None:
        write_synthetic_dataset(raw, tmp_path / "data" / "raw")
    return tmp_path


def stage_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def stage(cwd: Path, name: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, env=stage_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, prefix: str, *expected: str) -> str:
    """The error line of a failed command: exit status 1, no traceback, the last stderr line starts
    with `prefix` and contains every `expected` text. Returns the line."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = [row for row in result.stderr.splitlines() if row.strip()][-1]
    assert line.startswith(prefix), result.stderr[-3000:]
    for text in expected:
        assert text in line, line
    return line


def replace_member(zip_path: Path, member: str, data: bytes) -> None:
    """Rewrite `zip_path` with `member`'s bytes replaced (stored, like fetch's archives)."""
    with zipfile.ZipFile(zip_path) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    members[member] = data
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as dst:
        for name, content in members.items():
            dst.writestr(name, content)


def train_images(root: Path) -> list[str]:
    with zipfile.ZipFile(root / "data" / "raw" / IMAGES_ZIP["train"]) as zf:
        return sorted(n.split("/images/", 1)[1] for n in zf.namelist() if n.endswith(".jpg"))


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def outputs(root: Path) -> list[str]:
    """Every file and directory the stages wrote under data/ (but data/raw), models/ and reports/."""
    found = []
    for top in ("data", "models", "reports"):
        if (root / top).exists():
            found += [str(p.relative_to(root)) for p in (root / top).rglob("*")
                      if not str(p.relative_to(root)).startswith("data/raw")]
    return sorted(found)


def unshare_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode == 0


needs_tmpfs = pytest.mark.skipif(not unshare_available(), reason="needs `unshare` (user + mount namespaces) for a tiny tmpfs")


def on_tiny_disk(mount: Path, size_kb: int, command: str, cwd: Path, prepare: str = "") -> subprocess.CompletedProcess:
    """Run the shell `command` in `cwd` with a `size_kb` tmpfs mounted at `mount` (its own mount
    namespace: nothing outside sees it); `prepare` runs after mounting (e.g. copies inputs in)."""
    mount.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o size={size_kb}k tmpfs '{mount}' && {prepare or 'true'} && {command}"
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=cwd,
                          env=stage_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# 1, 10b. every image in a shard decodes fully, as training decodes it; RGBA PNGs are re-encoded


def test_a_jpeg_corrupt_in_its_middle_is_dropped_named_and_never_reaches_training(tmp_path):
    root = project(tmp_path)
    names = train_images(root)
    zip_path = root / "data/raw" / IMAGES_ZIP["train"]
    with zipfile.ZipFile(zip_path) as zf:
        good = zf.read(image_member("train", names[0]))
        size = Image.open(io.BytesIO(good)).size
    noisy = jpeg_bytes(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    half = noisy[:len(noisy) // 2] + b"\xff\xd9"  # TF decodes this to a half-grey image, libjpeg only warns
    garbled = noisy[:len(noisy) // 2] + bytes(range(256)) + noisy[len(noisy) // 2 + 256:]
    rgba = Image.new("RGBA", size, (200, 40, 40, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))  # left half transparent
    png = io.BytesIO()
    rgba.save(png, format="PNG")
    for name, data in ((names[0], half), (names[1], garbled), (names[2], png.getvalue())):
        replace_member(zip_path, image_member("train", name), data)

    filtered = stage(root, "filter")
    assert filtered.returncode == 0, filtered.stderr[-3000:]
    stats = json.loads((root / "reports/filter.json").read_text())["train"]
    assert stats["images_dropped"]["corrupt"] == 2
    assert {(b["image"], b["reason"]) for b in stats["broken_images"]} == {(names[0], "corrupt"), (names[1], "corrupt")}
    assert "Corrupt JPEG data" in stats["broken_images"][0]["detail"]
    assert stats["images_reencoded"]["not_jpeg"] == 1  # the RGBA PNG: kept, re-encoded
    assert f"dropped {names[0]}: corrupt" in filtered.stdout

    sharded = stage(root, "shard")
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    import tensorflow as tf

    from facedet.data.tfrecord_schema import list_shards
    from facedet.train.input import decode_example

    stored = {}
    for record in tf.data.TFRecordDataset(list_shards(root / "data/tfrecords", "train")):
        example = tf.train.Example.FromString(record.numpy()).features.feature
        stored[example["image/source_id"].bytes_list.value[0].decode()] = decode_example(record)[0].numpy()
    assert names[0] not in stored and names[1] not in stored and len(stored) == TINY_RAW.train_images - 2
    png_pixels = stored[names[2]]  # decoded exactly as training decodes it
    assert np.abs(png_pixels[:, : size[0] // 4].astype(int) - 128).max() <= 6  # transparent -> grey
    assert png_pixels[:, -size[0] // 4:, 0].mean() > 150


# ---------------------------------------------------------------------------------------------
# 2. a truncated or foreign .tflite is refused in one line before an interpreter sees it


def test_a_truncated_or_foreign_tflite_is_refused_in_one_line(standin_tflite, photo, tmp_path, capsys):
    from facedet.cli import main
    from facedet.runtime.tflite_detector import TFLiteDetector

    data = standin_tflite.read_bytes()
    for size in (8, 100, len(data) // 4, len(data) // 2, len(data) - 64, len(data) - 1):
        cut = tmp_path / f"cut{size}.tflite"
        cut.write_bytes(data[:size])
        assert main(["detect", str(cut), str(photo), "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"facedet detect: error: {cut}: ") and "\n" not in err
        assert "truncated or corrupt TFLite file" in err or "not a TFLite model" in err
        with pytest.raises(ValueError, match="TFLite"):
            TFLiteDetector(cut)  # what the evaluation stages and the benchmarks load through
    assert not (tmp_path / "out").exists()
    foreign = tmp_path / "photo.tflite"
    shutil.copy(photo, foreign)
    result = subprocess.run([sys.executable, "-m", "facedet.cli", "detect", str(foreign), str(photo), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, env=stage_env())
    one_line_error(result, "facedet detect: error: ", "not a TFLite model file")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) * 9 // 10])
    result = subprocess.run([sys.executable, "-m", "facedet.cli", "detect", str(cut), str(photo), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, env=stage_env())
    one_line_error(result, "facedet detect: error: ", "truncated or corrupt TFLite file", f"{len(data) * 9 // 10:,} bytes")
    assert not (tmp_path / "out").exists()


def test_the_latency_benchmark_refuses_a_truncated_model(standin_tflite, tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    from tflite_latency import tflite_candidate

    from facedet.runtime.tflite_check import TFLiteFileError

    cut = tmp_path / "cut.tflite"
    cut.write_bytes(standin_tflite.read_bytes()[:1000])
    with pytest.raises(TFLiteFileError, match="truncated or corrupt"):
        tflite_candidate("cut", cut)


# ---------------------------------------------------------------------------------------------
# 4. timeouts on every network read


@pytest.fixture
def stalled_server():
    """A server that accepts connections, reads the request and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_stalled_imagenet_download_fails_within_the_timeout_in_one_line(stalled_server, tmp_path, monkeypatch):
    from keras.src.applications import mobilenet_v2
    from keras.src.backend import config as keras_config

    from facedet.model.config import DetectorConfig
    from facedet.model.ssd import BackboneWeightsError, build_detector

    monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", stalled_server + "/")
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))
    config = DetectorConfig(input_size=96, alpha=0.35, feature_strides=(8, 16, 32), head_channels=16)
    started = time.monotonic()
    with pytest.raises(BackboneWeightsError) as error:
        build_detector(config, "imagenet", download_timeout_s=1)
    assert time.monotonic() - started < 30
    assert "sent nothing for 1 s" in str(error.value) and "\n" not in str(error.value)
    assert not list((tmp_path / "keras").rglob("*.h5"))  # no partial weights file left


def test_a_stalled_mirror_fails_within_the_timeout_in_one_line(stalled_server, tmp_path):
    from facedet.data.download import Downloader, DownloadError

    started = time.monotonic()
    with pytest.raises(DownloadError) as error:
        Downloader(retries=1, timeout=1, backoff=0, progress=False).download(
            "WIDER_val.zip", [f"{stalled_server}/WIDER_val.zip"], tmp_path)
    assert time.monotonic() - started < 30
    assert "timed out" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "WIDER_val.zip").exists()


# ---------------------------------------------------------------------------------------------
# 5. a split left with no images or no faces stops the filter, naming the params


@pytest.mark.parametrize("changes, expected", [
    ({"min_face_px": 10000}, ["train: no faces left", "filter.min_face_px: 10000.0 dropped"]),
    ({"min_face_px": 10000, "keep_empty_images": False},
     ["train: no images left", "filter.keep_empty_images: False dropped"]),
])
def test_a_filter_that_empties_a_split_stops_with_the_params_named(tmp_path, changes, expected):
    root = project(tmp_path, {"filter": changes})
    one_line_error(stage(root, "filter"), "filter: error: ", *expected)
    assert outputs(root) == []  # no data/interim, no reports/filter.json, no temporary directory


def test_an_evaluation_set_with_no_faces_is_an_error_not_ap_minus_one(tmp_path):
    from facedet.data.filtering import FilteredImage
    from facedet.data.wider_archive import WiderArchive
    from facedet.evaluate.score import evaluate_detector
    from facedet.runtime.detector_protocol import Detector

    class Blind(Detector):
        def detect(self, image: np.ndarray) -> np.ndarray:
            return np.zeros((0, 5), np.float32)

    write_synthetic_dataset(TINY_RAW, tmp_path / "raw")
    empty = [FilteredImage("0--Parade/x.jpg", 100, 100, np.zeros((0, 4), np.float32))]
    with pytest.raises(ValueError, match="no faces to score"):
        evaluate_detector(Blind(), WiderArchive(tmp_path / "raw"), empty, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


# ---------------------------------------------------------------------------------------------
# 6, 10c. a killed stage leaves only git-ignored temporary outputs, removed by its next run


def test_a_killed_stage_leaves_nothing_that_survives_its_next_run(tmp_path):
    root = project(tmp_path, {"shard": {"train_shards": 8, "workers": 2, "reencode": True}},
                   raw=dataclasses.replace(TINY_RAW, train_images=200, min_side=300, max_side=400))
    assert stage(root, "filter").returncode == 0
    run(["git", "init", "-q"], root)
    proc = subprocess.Popen([sys.executable, "-m", "stages.shard"], cwd=root, env=stage_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((root / "data").glob(".tfrecords.tmp-*/*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until the workers write shards into the temporary directory
    assert proc.poll() is None, "the shard stage ended before it could be killed"
    proc.kill()
    _, stderr = proc.communicate()
    deadline = time.monotonic() + 30  # its workers see their parent gone and stop
    while _processes_in(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_in(root) == []  # no orphan workers
    leftovers = list((root / "data").glob(".tfrecords.tmp-*"))
    assert leftovers and not (root / "data/tfrecords").exists()  # a kill -9 cannot clean up: no final output
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], root)
    assert ".tmp-" not in status  # git-ignored: `git add -A` does not commit them
    assert "BrokenPipe" not in stderr and "Traceback" not in stderr
    assert stage(root, "shard").returncode == 0
    assert not list((root / "data").glob(".*.tmp-*")) and (root / "data/tfrecords/label_map.pbtxt").is_file()


def _processes_in(folder: Path) -> list[str]:
    """The ids of the processes running in `folder`."""
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and _cwd(pid) == folder]


def _cwd(pid: str) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# 7. disk full: one line naming the path and the space needed


def test_fetch_checks_free_space_before_a_download(tmp_path, monkeypatch):
    from facedet.data.download import Downloader, Pin
    from facedet.process import disk
    from facedet.process.disk import DiskFullError

    source = tmp_path / "mirror" / "WIDER_val.zip"
    source.parent.mkdir()
    source.write_bytes(b"x" * 300_000)
    monkeypatch.setattr(disk, "free_bytes", lambda path: 100_000)
    with pytest.raises(DiskFullError) as error:
        Downloader(retries=1, progress=False).download("WIDER_val.zip", [source.as_uri()], tmp_path / "downloads",
                                                       Pin(300_000, "0" * 64, "given"))
    assert str(error.value) == (f"{tmp_path / 'downloads'}: downloading WIDER_val.zip (300.0 KB) needs 300.0 KB free, "
                                "only 100.0 KB left on that disk")
    assert list((tmp_path / "downloads").iterdir()) == []


@needs_tmpfs
def test_a_disk_full_during_a_download_removes_the_part_file_and_says_so(tmp_path):
    source = tmp_path / "WIDER_val.zip"
    source.write_bytes(os.urandom(400_000))
    disk_dir = tmp_path / "downloads"
    code = ("from facedet.data.download import Downloader; from facedet.process.disk import DiskFullError\n"
            "try:\n"
            f"    Downloader(retries=1, progress=False).download('WIDER_val.zip', ['{source.as_uri()}'], '{disk_dir}')\n"
            "except DiskFullError as err:\n"
            "    raise SystemExit(f'fetch: error: {err}')\n")
    result = on_tiny_disk(disk_dir, 128, f"{sys.executable} -c \"{code}\"; s=$?; ls -A '{disk_dir}'; exit $s", tmp_path)
    line = one_line_error(result, f"fetch: error: {disk_dir}/WIDER_val.zip.part: disk full after ", "removed the partial file")
    assert "offline" not in line
    assert result.stdout.strip() == ""  # the .part was removed: the disk is not left full


@needs_tmpfs
def test_shard_train_and_export_on_a_full_disk_name_the_path_and_the_space_needed(tmp_path):
    root = project(tmp_path / "p")
    assert stage(root, "filter").returncode == 0
    saved = tmp_path / "saved"
    shutil.copytree(root / "data", saved)
    used_kb = sum(-(-p.stat().st_size // 4096) * 4 for p in saved.rglob("*") if p.is_file()) + 64
    result = on_tiny_disk(root / "data", used_kb, f"{sys.executable} -m stages.shard", root,
                          prepare=f"cp -r '{saved}'/. '{root / 'data'}'")
    one_line_error(result, "shard: error: data/tfrecords", "free")
    assert stage(root, "shard").returncode == 0  # the real disk: shards for train and export below

    result = on_tiny_disk(root / "models", 64, f"{sys.executable} -m stages.train", root)
    one_line_error(result, "train: error: models/checkpoints: training (checkpoints and model.keras) needs ", "free")

    from facedet.model.config import DetectorConfig

    model_dir = tmp_path / "detector"
    model_dir.mkdir()
    (model_dir / "detector.json").write_text(DetectorConfig(input_size=96, alpha=0.35).to_json())
    (model_dir / "model.keras").write_bytes(b"\0" * 200_000)
    out = tmp_path / "disk" / "export"
    result = on_tiny_disk(tmp_path / "disk", 64,
                          f"{sys.executable} -m stages.export --model-dir '{model_dir}' --export-dir '{out}'", root)
    one_line_error(result, f"export: error: {out}: the exported models needs 600.0 KB free")


# ---------------------------------------------------------------------------------------------
# 3, 8 and the probe's kill -9 / two repros: on a real pipeline (data stages once for the module)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    repo = fresh_copy(tmp_path_factory.mktemp("faults") / "repo", {**SMALL, ("train", "steps"): 400})
    run(["dvc", "repro", "shard"], repo)
    return repo


@pytest.mark.slow
def test_deterministic_training_gives_identical_model_keras_at_the_default_batch(tmp_path):
    """What holds on CPU TF 2.21 with train.deterministic: true (facedet/train/determinism.py): two runs of the
    default preset at batch 16 give the same loss at every step and the same model.keras bytes."""
    root = project(tmp_path, {"train": {"steps": 4, "batch_size": 16, "warmup_steps": 2, "checkpoint_every": 100,
                                        "log_every": 1, "deterministic": True}},  # unpinned, weights differ after step 1
                   raw=dataclasses.replace(TINY_RAW, train_images=20))
    assert stage(root, "filter").returncode == 0 and stage(root, "shard").returncode == 0
    runs = []
    for _ in range(2):
        shutil.rmtree(root / "models", ignore_errors=True)
        shutil.rmtree(root / "dvclive", ignore_errors=True)
        result = stage(root, "train")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "warning" not in result.stdout
        runs.append(((root / "models/detector/model.keras").read_bytes(),
                     (root / "dvclive/train/plots/metrics/loss/total.tsv").read_text()))
    assert runs[0][1] == runs[1][1]  # every step's loss, to the last digit
    assert hashlib.sha256(runs[0][0]).hexdigest() == hashlib.sha256(runs[1][0]).hexdigest()


def _trainer_pids(repo: Path) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"stages.train" in cmdline and _cwd(pid) == repo:
            pids.append(int(pid))
    return pids


@pytest.mark.slow
def test_kill_9_of_dvc_takes_the_trainer_with_it_and_a_second_repro_meets_the_lock(pipeline):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    dvc = subprocess.Popen(["dvc", "repro", "train"], cwd=pipeline, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _trainer_pids(pipeline) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _trainer_pids(pipeline), "the train stage never started"
    second = subprocess.run(["dvc", "repro"], cwd=pipeline, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode != 0 and "lock" in (second.stdout + second.stderr).lower()
    dvc.send_signal(signal.SIGKILL)
    dvc.wait()
    deadline = time.monotonic() + 10
    while _trainer_pids(pipeline) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _trainer_pids(pipeline) == []  # no orphan to overwrite outputs later
    assert not (pipeline / "models/detector").exists()


@pytest.mark.slow
def test_kill_9_of_training_leaves_no_model_and_the_next_run_resumes(pipeline):
    env = dict(stage_env(), PYTHONUNBUFFERED="1")
    for attempt in ("killed", "resumed"):
        proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=pipeline, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if attempt == "killed":
            deadline = time.monotonic() + 600
            state = pipeline / "models/checkpoints/checkpoint"  # written after the checkpoint's own files
            while not (state.is_file() and "ckpt-" in state.read_text()) and time.monotonic() < deadline:
                time.sleep(0.2)
        else:  # its first line after start-up says where it resumes; then stop it too
            first = next(line for line in proc.stdout if line.startswith(("resuming from", "wrote")))
            assert first.startswith("resuming from") and "models/checkpoints/ckpt-" in first
        proc.kill()
        proc.wait()
        assert not (pipeline / "models/detector").exists()  # never a half-written model
        assert not list((pipeline / "models").glob(".*.tmp-*")) or attempt == "killed"


# ---------------------------------------------------------------------------------------------
# 9, 10a, 10d, 10e and the probe's bad params / YAML tag: params and command-line input


def _float_keys(spec, prefix: str) -> list[str]:
    import typing

    hints = typing.get_type_hints(spec)
    keys = []
    for field in dataclasses.fields(spec):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            keys += _float_keys(hint, f"{prefix}.{field.name}")
        elif hint is float:
            keys.append(f"{prefix}.{field.name}")
    return keys


def test_nan_and_inf_are_rejected_for_every_float_param_with_the_key_named():
    from facedet.params.loader import ParamsError, build
    from facedet.params.recipes import resolve_auto
    from facedet.params.sections import SECTIONS as specs
    params = resolve_auto(yaml.safe_load((REPO / "params.yaml").read_text())).params  # `auto` resolved, as stages do
    checked = 0
    for section, spec in specs.items():
        for key in _float_keys(spec, section):
            for bad in (float("nan"), float("inf"), float("-inf")):
                values = json.loads(json.dumps(params[section]))
                node, *path = key.split(".")[1:]
                target = values
                for part in [node, *path][:-1]:
                    target = target.setdefault(part, {})
                target[[node, *path][-1]] = bad
                with pytest.raises(ParamsError, match=f"'{key}' must be a finite number"):
                    build(spec, values, section)
                checked += 1
    assert checked >= 3 * 20


@pytest.mark.parametrize("text, expected", [
    ("filter:\n  min_face_px: .nan\n", ["params.yaml: 'filter.min_face_px' must be a finite number, got nan"]),
    ("filter:\n  min_face_px: 6\n  max_blur 2\n  workers: 1\n", ["params.yaml:3: invalid YAML: could not find expected ':'"]),
    ("filter:\n  min_face_pix: 6\n", ["unknown key 'filter.min_face_pix' (did you mean 'filter.min_face_px'?)"]),
    ("filter: !!python/object/apply:os.system ['echo pwned']\n", ["params.yaml:1: invalid YAML: could not determine a constructor"]),
    ("filter:\n  max_blur: 7\n", ["'filter.max_blur' must be <= 2, got 7"]),
])
def test_bad_params_end_in_one_line_naming_the_key_or_line(tmp_path, text, expected):
    (tmp_path / "params.yaml").write_text(text)
    one_line_error(stage(tmp_path, "filter"), "filter: error: ", *expected)
    assert outputs(tmp_path) == []


def test_a_missing_params_yaml_is_named_by_dvc(tmp_path):
    repo = fresh_copy(tmp_path / "repo")
    (repo / "params.yaml").unlink()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "'params.yaml' does not exist" in result.stderr


def test_out_pointing_at_a_file_and_an_unreadable_image_are_one_line(standin_tflite, photo, tmp_path, capsys):
    from facedet.cli import main

    taken = tmp_path / "results.json"
    taken.write_text("{}")
    assert main(["detect", str(standin_tflite), str(photo), "--out", str(taken)]) == 1
    assert capsys.readouterr().err.strip() == (f"facedet detect: error: --out {taken}: {taken} is a file, not a "
                                               "directory: give a directory for the results")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    assert main(["detect", str(standin_tflite), str(broken), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"facedet detect: error: {broken}: cannot read image") and "\n" not in err
    assert not list((tmp_path / "out").glob("*"))


def test_eval_wider_with_a_missing_ground_truth_is_one_line(tmp_path, capsys):
    from facedet.cli import main

    (tmp_path / "pred").mkdir()
    assert main(["eval-wider", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "nowhere"),
                 "--json", str(tmp_path / "ap.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("facedet eval-wider: error: ") and "nowhere" in err and "\n" not in err
    assert not (tmp_path / "ap.json").exists()


# ---------------------------------------------------------------------------------------------
# the probe's data faults that already ended in one line: bad downloads, zip-slip, malformed gt txt


def test_a_download_with_wrong_bytes_is_one_line_and_never_renamed_into_place(tmp_path):
    from facedet.data.download import Downloader, DownloadError, Pin

    source = tmp_path / "mirror" / "WIDER_val.zip"
    source.parent.mkdir()
    source.write_bytes(b"not the archive")
    with pytest.raises(DownloadError) as error:
        Downloader(progress=False).download("WIDER_val.zip", [source.as_uri()], tmp_path / "downloads",
                                            Pin(None, "0" * 64, "given"))
    assert "sha256 mismatch" in str(error.value) and "\n" not in str(error.value)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_a_zip_slip_member_is_refused_in_one_line(tmp_path):
    root = project(tmp_path)
    with zipfile.ZipFile(root / "data/raw" / IMAGES_ZIP["train"], "a") as zf:
        zf.writestr("WIDER_train/images/../../../evil.jpg", jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
    one_line_error(stage(root, "filter"), "filter: error: ", "unsafe member name 'WIDER_train/images/../../../evil.jpg'")
    assert outputs(root) == [] and not (tmp_path.parent / "evil.jpg").exists()


def test_a_malformed_gt_txt_is_one_line_naming_the_file_and_line(tmp_path):
    root = project(tmp_path)
    split_zip = root / "data/raw/wider_face_split.zip"
    member = "wider_face_split/wider_face_val_bbx_gt.txt"
    with zipfile.ZipFile(split_zip) as zf:
        lines = zf.read(member).decode().split("\n")
    lines[1] = "two"  # the face count of the first image
    replace_member(split_zip, member, "\n".join(lines).encode())
    one_line_error(stage(root, "filter"), "filter: error: ", f"wider_face_split.zip:{member}:2")
    assert outputs(root) == []


# ---------------------------------------------------------------------------------------------
# 19.1 a phone photo (EXIF orientation 6) keeps its face: annotations are in the displayed frame


FACE = (20, 10, 80, 60)  # x1, y1, x2, y2 in the displayed photo, as a labelling tool shows it


def phone_photo(width: int, height: int) -> bytes:
    """A JPEG shown as `width` x `height` (grey, a red face at FACE) but stored turned a quarter
    left, with EXIF orientation 6 ("turn 90 degrees clockwise to view"), as phones store portraits."""
    from PIL import ImageOps

    shown = Image.new("RGB", (width, height), (110, 110, 110))
    shown.paste((230, 20, 20), FACE)
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).size == (width, height)
    return buf.getvalue()


def shard_example(image: str, data: bytes, gt_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What training sees of one image after filter and shard: (pixels (H, W, 3), boxes (N, 4) pixel
    x1, y1, x2, y2), decoded from the tf.Example as facedet.train.input decodes it."""
    import tensorflow as tf

    from facedet.data.filtering import FilteredImage, filter_faces, inspect_image, reencode_reason
    from facedet.data.tfrecord_writer import ExampleEncoder
    from facedet.params.sections import FilterParams
    from facedet.train.input import decode_example

    info = inspect_image(data)
    assert not info.problem, info
    assert reencode_reason(info.mode, info.format, info.orientation) == "exif_orientation"  # counted in filter.json
    kept, dropped = filter_faces(gt_rows, info.width, info.height, FilterParams(min_face_px=4))
    assert not dropped, dropped
    item = FilteredImage(image, info.width, info.height, kept[:, :4].astype(np.float32), info.mode, info.format)

    class Archive:
        def read_image(self, split: str, name: str) -> bytes:
            return data

    pixels, boxes = decode_example(tf.constant(ExampleEncoder(Archive(), "train")(item)))
    h, w = pixels.shape[:2]
    return pixels.numpy(), boxes.numpy()[:, [1, 0, 3, 2]] * (w, h, w, h)


def index_voc_photo(tmp_path: Path, data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    """The WIDER gt rows that a VOC source with this photo (its face annotated at FACE) becomes."""
    from facedet.data.extra_train import write_extra_index
    from facedet.data.wider_gt import parse_gt_txt
    from facedet.params.sections import ExtraSource

    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages" / "p.jpg").write_bytes(data)
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    (root / "Annotations" / "p.xml").write_text(
        f"<annotation><filename>p.jpg</filename>{size_xml}<object><name>face</name><bndbox><xmin>{FACE[0]}</xmin>"
        f"<ymin>{FACE[1]}</ymin><xmax>{FACE[2]}</xmax><ymax>{FACE[3]}</ymax></bndbox></object></annotation>\n")
    write_extra_index("phone", ExtraSource(format="voc", path=str(root), pixel_origin=0), tmp_path / "phone.zip")
    with zipfile.ZipFile(tmp_path / "phone.zip") as zf:
        records = parse_gt_txt(zf.read("wider_face_split/phone_train_bbx_gt.txt").decode())
    return records[0].gt_rows


@pytest.mark.parametrize("source, shown", [("voc without <size>", (120, 300)), ("voc, square photo", (160, 160)),
                                           ("voc with <size>", (120, 300)), ("wider gt txt", (120, 300))])
def test_a_phone_photo_with_exif_orientation_keeps_its_face_where_it_was_annotated(tmp_path, source, shown):
    data = phone_photo(*shown)
    if source.startswith("voc"):
        rows = index_voc_photo(tmp_path, data, shown if "with" in source else None)
    else:  # a WIDER tree's gt txt row: x1 y1 w h blur expression illumination invalid occlusion pose
        rows = np.array([[FACE[0], FACE[1], FACE[2] - FACE[0], FACE[3] - FACE[1], 0, 0, 0, 0, 0, 0]])
    pixels, boxes = shard_example("phone/p.jpg", data, rows)
    assert pixels.shape[:2] == (shown[1], shown[0])  # the TFRecord stores the photo as it is shown
    np.testing.assert_allclose(boxes, [FACE], atol=1.0)
    x1, y1, x2, y2 = FACE
    face = pixels[y1 + 3:y2 - 3, x1 + 3:x2 - 3].astype(int)
    assert face[..., 0].mean() > 200 and face[..., 1].mean() < 60  # the box holds the red face


def test_a_photo_without_exif_rotation_is_stored_untouched():
    from facedet.data.tfrecord_writer import image_for_shard

    plain = jpeg_bytes(np.full((40, 60, 3), 90, np.uint8))
    assert image_for_shard(plain, 60, 40, "RGB", "JPEG").data == plain  # so its data hashes stay the same


def test_evaluation_and_detect_read_the_displayed_photo(tmp_path):
    from facedet.data.images import decode_rgb, read_photo

    data = phone_photo(120, 300)
    (tmp_path / "p.jpg").write_bytes(data)
    for pixels in (decode_rgb(data, "p.jpg"), read_photo(tmp_path / "p.jpg").pixels):
        assert pixels.shape == (300, 120, 3) and pixels[FACE[1] + 5, FACE[0] + 5, 0] > 200


# ---------------------------------------------------------------------------------------------
# 19.3, 19.5, 19.8 images in the wild for `facedet detect`: bombs, huge photos, 16-bit, broken links


class BrightestBox:
    """A Detector for these tests: one face, the box around the pixels brighter than 200 (score 0.9)."""

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(rgb.max(axis=-1) > 200)
        if not len(xs):
            return np.zeros((0, 5), np.float32)
        return np.array([[xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min(), 0.9]], np.float32)


def png_claiming(width: int, height: int) -> bytes:
    """A 1-bit PNG of a few hundred bytes whose header says `width` x `height` (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * ((width + 7) // 8 + 1) * 8)  # a few rows; the rest is never read
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_one_line_and_the_rest_of_the_folder_is_read(standin_tflite, photo, tmp_path, capsys):
    from facedet.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_bomb.png").write_bytes(png_claiming(15000, 12000))  # 180 megapixels claimed
    shutil.copy(photo, folder / "b_photo.jpg")
    assert main(["detect", str(standin_tflite), str(folder), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"facedet detect: error: {folder / 'a_bomb.png'}: 15000x12000 px (180.0 megapixels) PNG" in err
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert (tmp_path / "out" / "b_photo.json").is_file()  # the image after it was read


def test_a_huge_photo_is_detected_scaled_down_with_boxes_in_its_own_pixels(tmp_path, recwarn):
    from facedet.data.images import DETECT_MAX_SIDE
    from facedet.runtime.file_runner import detect_faces

    big = Image.new("L", (10000, 9000), 40)  # 90 megapixels: past Pillow's warning (89.5)
    big.paste(255, (4000, 3000, 6000, 5000))
    big.save(tmp_path / "big.jpg", quality=90)
    del big
    start = time.monotonic()
    [result] = detect_faces(BrightestBox(), [tmp_path / "big.jpg"], tmp_path / "out", 0.5)
    assert time.monotonic() - start < 15  # 24 s and 2.5 GB at 12000x9000 when it was decoded in full
    assert (result.width, result.height) == (10000, 9000)
    np.testing.assert_allclose(result.faces[0, :4], [4000, 3000, 2000, 2000], atol=12)
    assert max(Image.open(tmp_path / "out" / "big.jpg").size) <= DETECT_MAX_SIDE  # the drawing: the scaled photo
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_a_16_bit_png_is_read_as_its_grey_levels(tmp_path):
    from facedet.runtime.file_runner import detect_faces

    levels = np.full((60, 80), 20000, np.uint16)  # dark grey in 16 bits: Pillow's own conversion says white
    levels[20:40, 30:50] = 65000
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    [result] = detect_faces(BrightestBox(), [tmp_path / "deep.png"], tmp_path / "out", 0.5)
    np.testing.assert_array_equal(result.faces[:, :4], [[30, 20, 20, 20]])


def test_an_image_mode_that_has_no_rgb_view_is_refused_by_name(tmp_path):
    from facedet.data.images import ImageError, read_photo

    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ImageError, match=r"float.tiff: pixel mode F cannot be read as RGB"):
        read_photo(tmp_path / "float.tiff")


def test_broken_and_looping_links_in_a_folder_are_named_and_counted(standin_tflite, photo, tmp_path, capsys):
    from facedet.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo, folder / "a.jpg")
    (folder / "gone.jpg").symlink_to("moved-away.jpg")
    (folder / "loop.jpg").symlink_to("loop.jpg")
    assert main(["detect", str(standin_tflite), str(folder), "--out", str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    err = err.splitlines()
    assert f"facedet detect: error: {folder / 'gone.jpg'}: a broken symbolic link (-> moved-away.jpg), skipped" in err
    assert f"facedet detect: error: {folder / 'loop.jpg'}: a symbolic link loop (-> loop.jpg), skipped" in err
    assert out.splitlines()[-1] == "2 of 3 images not read (each named on stderr)" and len(err) == 2
    assert (tmp_path / "out" / "a.json").is_file()


# ---------------------------------------------------------------------------------------------
# 19.2 two `dvc exp run` at once: the second rewrites params.yaml while the first trains


def test_a_stage_whose_params_changed_while_it_ran_fails_so_dvc_records_nothing(tmp_path, monkeypatch):
    import stages.train

    root = project(tmp_path, {"train": {"steps": 20}}, raw=None)
    params_file = root / "params.yaml"
    values = yaml.safe_load(params_file.read_text())

    def second_experiment_meanwhile(params, **flags) -> None:  # what `dvc exp run -S train.steps=5` does to the file
        assert params.steps == values["train"]["steps"]
        values["train"]["steps"] = 5
        params_file.write_text(yaml.safe_dump(values, sort_keys=False))

    monkeypatch.setattr(stages.train, "train", second_experiment_meanwhile)
    with pytest.raises(SystemExit) as stop:
        stages.train.main(["--params", str(params_file), "--configs-dir", str(root / "configs")])
    message = str(stop.value)
    assert message.startswith(f"train: error: {params_file} changed while the stage ran (train.steps: ")
    assert "5 now" in message and "dvc exp run --queue" in message and "\n" not in message


def test_a_stage_whose_params_stayed_the_same_ends_normally(tmp_path, monkeypatch):
    import stages.train

    root = project(tmp_path, raw=None)
    ran = []
    monkeypatch.setattr(stages.train, "train", lambda params, **flags: ran.append(params.steps))
    stages.train.main(["--params", str(root / "params.yaml"), "--configs-dir", str(root / "configs")])
    assert ran


# ---------------------------------------------------------------------------------------------
# 19.6, 19.9 limits: size params bounded by the memory they need, model.preset a name in configs/


@pytest.mark.parametrize("preset", ["../../x", "/tmp/x", "sub/ssd", ".hidden"])
def test_a_model_preset_outside_configs_is_refused_in_one_line(tmp_path, preset):
    import stages.train

    root = project(tmp_path, raw=None)
    (tmp_path.parent / "x.yaml").write_text((REPO / "configs/ssd_mobilenet_v2_256.yaml").read_text())
    values = yaml.safe_load((root / "params.yaml").read_text())
    values["model"]["preset"] = preset
    (root / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    with pytest.raises(SystemExit) as stop:
        stages.train.main(["--params", str(root / "params.yaml"), "--configs-dir", str(root / "configs")])
    assert str(stop.value) == (f"train: error: params.yaml: 'model.preset' must name a preset in configs/ "
                               f"(configs/<name>.yaml: letters, digits, '_', '-', '.'), got {preset!r}: to train "
                               "from another file, copy it into configs/")


def test_an_export_size_that_needs_more_memory_than_the_machine_has_is_one_line_before_any_work():
    from facedet.export.tflite import MemoryNeedError, export_memory_need, require_memory

    eight_gb = 8 * 2**30
    with pytest.raises(MemoryNeedError) as err:
        require_memory([256, 4096], 100, available=eight_gb)
    message = str(err.value)
    assert message.startswith("params.yaml: 'export.input_sizes': exporting at 4096 needs about ")
    assert "this machine has 8.0 GB: the largest size that fits is " in message and "\n" not in message
    largest = int(message.rsplit(" ", 1)[1])
    assert export_memory_need(largest, 100) <= eight_gb < export_memory_need(largest + 32, 100)
    require_memory([256, 640], 100, available=eight_gb)  # the shipped sizes fit
