"""Training as the `train` stage runs it: a few steps on tiny synthetic shards lower the loss, write
model.keras + detector.json, DVCLive curves and TensorBoard logs; a run killed mid-way resumes from
its last checkpoint and ends exactly as an uninterrupted run; MirroredStrategy trains on two devices
and MultiWorkerMirroredStrategy with two workers."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from facedet.params.sections import AugmentParams, EvaluateParams, LossParams, TrainParams
from facedet.runtime.keras_detector import KerasDetector
from facedet.train.curves import restore_live_files
from facedet.train.fused_batch_norm import FusedBatchNormalization, fused_batch_norm
from facedet.train.loop import train
from facedet.train.schedule import learning_rate_at

from face_shards import TINY, write_face_records

REPO = Path(__file__).resolve().parents[1]
PARAMS = TrainParams(steps=24, batch_size=4, learning_rate=0.01, warmup_steps=2, weight_decay=4e-5, seed=1,
                     checkpoint_every=8, log_every=1)


def curve(live_dir: Path, name: str = "loss/total") -> list[tuple[int, float]]:
    rows = (live_dir / "plots" / "metrics" / f"{name}.tsv").read_text().split("\n")[1:]
    return [(int(r.split("\t")[0]), float(r.split("\t")[1])) for r in rows if r]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    files = write_face_records(root, images=16)
    out = {"model": root / "detector", "ckpt": root / "checkpoints", "live": root / "dvclive",
           "board": root / "checkpoints" / "tensorboard"}
    metrics = train(PARAMS, TINY, files, out["model"], out["ckpt"], out["live"], val_files=files, progress=False,
                    tensorboard_dir=out["board"])
    return files, out, metrics


def own_copy(out: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """The `trained` run's outputs copied into `tmp_path`, for a test that trains on from them: the module's
    run stays as trained for every other test, whatever order they run in."""
    root = out["model"].parent
    shutil.copytree(root, tmp_path / root.name)
    return {name: tmp_path / root.name / path.relative_to(root) for name, path in out.items()}


def test_a_few_steps_lower_the_loss_and_write_the_detector(trained):
    _, out, metrics = trained
    losses = [v for _, v in curve(out["live"])]
    assert len(losses) == PARAMS.steps
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert {"loss/total", "loss/localization", "loss/classification", "learning_rate",
            "val/loss/total"} <= set(metrics)
    assert [s for s, _ in curve(out["live"], "val/loss/total")] == [7, 15, 23]  # at each checkpoint
    assert json.loads((out["live"] / "metrics.json").read_text())["step"] == PARAMS.steps - 1
    assert sorted(p.name for p in out["model"].iterdir()) == ["backbone.json", "detector.json", "model.keras"]
    detections = KerasDetector(out["model"], EvaluateParams(score_threshold=0.0)).detect(np.zeros((90, 120, 3), np.uint8))
    assert detections.dtype == np.float32 and detections.shape[1] == 5
    assert np.all(np.diff(detections[:, 4]) <= 0)
    assert detections[:, 2].max() <= 120 + 1e-3 and detections[:, 3].max() <= 90 + 1e-3


def test_tensorboard_gets_the_same_scalars(trained):
    import tensorflow as tf

    _, out, _ = trained
    tags = {}
    for events in out["board"].glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["loss/total"] == list(range(PARAMS.steps))
    assert {"learning_rate", "loss/classification", "val/loss/total"} <= set(tags)


def test_a_restart_resumes_from_the_last_checkpoint_and_continues_the_curves(trained, tmp_path, capsys):
    files, trained_out, _ = trained
    out = own_copy(trained_out, tmp_path)
    # as if the run had been killed right after its checkpoint at step 16
    for leftover in out["ckpt"].glob(f"ckpt-{PARAMS.steps}.*"):
        leftover.unlink()
    (out["ckpt"] / "checkpoint").write_text('model_checkpoint_path: "ckpt-16"\n')
    (out["model"] / "model.keras").unlink()
    train(PARAMS, TINY, files, out["model"], out["ckpt"], out["live"], progress=False)
    assert "(step 16)" in capsys.readouterr().out
    assert (out["ckpt"] / f"ckpt-{PARAMS.steps}.index").is_file()
    assert (out["model"] / "model.keras").is_file()
    assert json.loads((out["live"] / "metrics.json").read_text())["step"] == PARAMS.steps - 1
    assert [s for s, _ in curve(out["live"])] == list(range(PARAMS.steps))  # no gap, no step twice


def test_the_same_weights_save_to_the_same_bytes(tmp_path):
    """Whenever they are saved: model.keras keeps no save time (Keras writes one into metadata.json and the
    zip's member dates), so DVC's cache hits for the stages after training."""
    from facedet.model.ssd import build_detector
    from facedet.train.save import save_detector

    model = build_detector(TINY)
    before = time.localtime()
    save_detector(model, TINY, tmp_path / "first")
    save_detector(model, TINY, tmp_path / "second")
    save_days = {time.strftime("%Y-%m-%d", day) for day in (before, time.localtime())}
    assert (tmp_path / "first/model.keras").read_bytes() == (tmp_path / "second/model.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "first/model.keras") as saved:
        assert not {"%04d-%02d-%02d" % member.date_time[:3] for member in saved.infolist()} & save_days
        date_saved = json.loads(saved.read("metadata.json")).get("date_saved", "")
        assert not any(date_saved.startswith(day) for day in save_days), date_saved


def test_a_changed_recipe_starts_over(trained, tmp_path):
    files, trained_out, _ = trained
    out = own_copy(trained_out, tmp_path)
    changed = TrainParams(**{**PARAMS.__dict__, "steps": 3, "learning_rate": 0.02})
    train(changed, TINY, files, out["model"], out["ckpt"], out["live"], progress=False)
    assert [s for s, _ in curve(out["live"])] == [0, 1, 2]
    assert not (out["ckpt"] / "ckpt-24.index").exists()


def test_resumed_curves_are_put_back_as_they_were_at_the_checkpoint(tmp_path):
    def write_curve(live: Path, steps: range) -> None:
        (live / "plots/metrics/loss").mkdir(parents=True, exist_ok=True)
        (live / "plots/metrics/loss/total.tsv").write_text("step\ttotal\n" + "".join(f"{s}\t1.0\n" for s in steps))

    live, snapshot = tmp_path / "dvclive", tmp_path / "checkpoints/dvclive"
    write_curve(snapshot, range(20))  # taken at the checkpoint of step 20
    restore_live_files(live, snapshot, start=20)  # `dvc repro` had deleted dvclive/
    assert [s for s, _ in curve(live, "loss/total")] == list(range(20))
    write_curve(live, range(20, 27))  # the killed run went on to step 26
    restore_live_files(live, snapshot, start=16)  # and resumes from an older checkpoint
    assert [s for s, _ in curve(live, "loss/total")] == list(range(16))


# A training process as `python -m stages.train` runs it, on TINY and the shards in its root.
TRAINING_PROCESS = Path(__file__).with_name("training_process.py")


def training_process(params: dict, root: Path, logical_cpus: int | None = None,
                     env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    args = [sys.executable, str(TRAINING_PROCESS), json.dumps(params), str(root)]
    args += ["--logical-cpus", str(logical_cpus)] if logical_cpus else []
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}  # only the multi-worker test sets one
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": python_path, **(env_extra or {})})
    return subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def weights(model_dir: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.models.load_model(model_dir / "model.keras").weights]


def test_a_killed_training_resumes_and_ends_exactly_like_an_uninterrupted_one(tmp_path):
    params = {"steps": 60, "batch_size": 4, "learning_rate": 0.01, "warmup_steps": 2, "weight_decay": 4e-5,
              "seed": 3, "checkpoint_every": 10, "log_every": 1, "deterministic": True}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    for root in (killed, whole):
        root.mkdir()
        write_face_records(root, images=16)
    reference = training_process(params, whole)  # in parallel: the same run, never interrupted
    process = training_process(params, killed)
    deadline = time.monotonic() + 600  # a hang guard, not a speed test: generous for loaded CI machines
    while not (killed / "checkpoints/checkpoint").exists():  # the first checkpoint is complete
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (killed / "detector").exists()  # killed mid-way
    assert len(curve(killed / "dvclive")) >= params["checkpoint_every"]
    for output in (killed / "dvclive").rglob("*"):  # `dvc repro` deletes the stage's outputs first
        if output.is_file():
            output.unlink()

    log = finish(training_process(params, killed))
    assert "resuming from" in log and f"(step {params['steps']})" not in log
    assert (killed / f"checkpoints/ckpt-{params['steps']}.index").is_file()
    assert [s for s, _ in curve(killed / "dvclive")] == list(range(params["steps"]))  # DVCLive's count goes on
    assert json.loads((killed / "dvclive/metrics.json").read_text())["step"] == params["steps"] - 1
    finish(reference)
    assert curve(killed / "dvclive") == curve(whole / "dvclive")
    for resumed, uninterrupted in zip(weights(killed / "detector"), weights(whole / "detector"), strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(tmp_path):
    write_face_records(tmp_path, images=8)
    params = {"steps": 4, "batch_size": 4, "learning_rate": 0.01, "warmup_steps": 1, "weight_decay": 4e-5,
              "strategy": "mirrored", "checkpoint_every": 2, "log_every": 1}
    log = finish(training_process(params, tmp_path, logical_cpus=2))
    assert "MirroredStrategy with 2 replica(s)" in log
    metrics = json.loads(log.split("metrics ", 1)[1].splitlines()[0])
    assert np.isfinite(metrics["loss/total"]) and metrics["loss/total"] > 0
    assert (tmp_path / "detector/model.keras").is_file() and (tmp_path / "checkpoints/ckpt-4.index").is_file()
    assert [s for s, _ in curve(tmp_path / "dvclive")] == [0, 1, 2, 3]


def test_multi_worker_strategy_trains_with_two_workers_from_tf_config(tmp_path):
    """Two local workers, as two machines would run `python -m stages.train` with TF_CONFIG: the
    chief (worker 0) writes the model, the curves and the checkpoints."""
    write_face_records(tmp_path, images=8)
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            ports.append(probe.getsockname()[1])
    params = {"steps": 4, "batch_size": 4, "learning_rate": 0.01, "warmup_steps": 1, "weight_decay": 4e-5,
              "strategy": "multi_worker", "checkpoint_every": 2, "log_every": 1}
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"localhost:{port}" for port in ports]},
                     "task": {"type": "worker", "index": index}}
        workers.append(training_process(params, tmp_path, env_extra={"TF_CONFIG": json.dumps(tf_config)}))
    logs = [finish(worker) for worker in workers]
    losses = [json.loads(log.split("metrics ", 1)[1].splitlines()[0])["loss/total"] for log in logs]
    assert all("with 2 replica(s)" in log for log in logs)
    assert losses[0] == losses[1] and np.isfinite(losses[0])  # one model, trained in lockstep
    assert (tmp_path / "detector/model.keras").is_file() and (tmp_path / "checkpoints/ckpt-4.index").is_file()
    assert [s for s, _ in curve(tmp_path / "dvclive")] == [0, 1, 2, 3]


def test_fused_batch_norm_trains_like_keras_and_leaves_plain_layers_behind():
    import tensorflow as tf

    image = keras.Input((8, 8, 3))
    model = keras.Model(image, keras.layers.BatchNormalization(momentum=0.9)(keras.layers.Conv2D(4, 3)(image)))
    x = tf.random.stateless_normal([2, 8, 8, 3], seed=[1, 2]) * 3.0 + 1.0

    def step():
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_sum(tf.sin(y))
        return y, tape.gradient(loss, model.trainable_variables), [np.asarray(v) for v in model.non_trainable_weights]

    start = [np.asarray(w) for w in model.weights]
    keras_y, keras_grads, keras_stats = step()
    model.set_weights(start)
    with fused_batch_norm(model):
        fused_y, fused_grads, fused_stats = step()
        assert isinstance(model.layers[-1], FusedBatchNormalization)
    np.testing.assert_allclose(fused_y, keras_y, atol=1e-4)
    for fused, plain in zip(fused_grads, keras_grads, strict=True):
        np.testing.assert_allclose(fused, plain, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(fused_stats[0], keras_stats[0], atol=1e-6)  # moving mean
    np.testing.assert_allclose(fused_stats[1], keras_stats[1], rtol=1e-2)  # moving variance (unbiased batch var)
    assert type(model.layers[-1]) is keras.layers.BatchNormalization  # what model.save writes


def test_learning_rate_warms_up_then_follows_a_cosine():
    params = TrainParams(steps=110, batch_size=1, learning_rate=1.0, warmup_steps=10, weight_decay=0.0)
    assert learning_rate_at(0, params) == pytest.approx(0.1)
    assert learning_rate_at(9, params) == pytest.approx(1.0)
    assert learning_rate_at(60, params) == pytest.approx(0.5)
    assert learning_rate_at(110, params) == pytest.approx(0.0)


def test_stage_help_says_what_it_reads_and_writes():
    result = subprocess.run([sys.executable, "-m", "stages.train", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0
    assert "models/detector" in result.stdout and "data/tfrecords" in result.stdout


SHORT = TrainParams(steps=4, batch_size=4, learning_rate=0.01, warmup_steps=1, weight_decay=4e-5, seed=1,
                    checkpoint_every=2, log_every=1)


def test_a_checkpoint_that_does_not_load_is_set_aside_and_training_resumes_from_the_one_before(tmp_path, capsys):
    files = write_face_records(tmp_path, images=8)
    ckpt, model = tmp_path / "checkpoints", tmp_path / "detector"
    train(SHORT, TINY, files, model, ckpt, None, progress=False)
    [data] = ckpt.glob("ckpt-4.data-*")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a disk that filled up, a copy cut short
    capsys.readouterr()
    train(SHORT, TINY, files, model, ckpt, None, progress=False)
    out = capsys.readouterr().out
    assert f"train: warning: checkpoint {ckpt / 'ckpt-4'} does not load (" in out
    assert "set aside as ckpt-4.*.broken" in out and "(step 2)" in out
    assert (ckpt / f"{data.name}.broken").is_file() and (ckpt / "ckpt-4.index").is_file()  # a new, good one

    for data in ckpt.glob("ckpt-*.data-*[0-9]"):  # none loads: training starts over
        data.write_bytes(b"")
    train(SHORT, TINY, files, model, ckpt, None, progress=False)
    out = capsys.readouterr().out
    assert out.count("does not load") == 2 and "training starts over" in out and "resuming" not in out
    assert (model / "model.keras").is_file()


def test_a_corrupt_shard_is_named_before_any_checkpoint_is_touched(tmp_path):
    from facedet.data.tfrecord_schema import CorruptShardError

    files = write_face_records(tmp_path, images=8)
    ckpt = tmp_path / "checkpoints"
    train(SHORT, TINY, files, tmp_path / "detector", ckpt, None, progress=False)
    before = sorted(p.name for p in ckpt.iterdir())
    shard = Path(files[0])
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=rf"^{shard}: corrupt TFRecord shard, record \d+ or soon after"):
        train(SHORT, TINY, files, tmp_path / "detector", ckpt, None, progress=False)
    assert sorted(p.name for p in ckpt.iterdir()) == before


def test_the_recipe_options_train_through_the_loop(tmp_path):
    """ATSS, quality focal loss, a GIoU box loss, short-side crops and a GroupNorm head, all at once: the loop
    hands the anchors to the losses on decoded boxes (train and val) and the detector keeps its head_norm."""
    files = write_face_records(tmp_path, images=8)
    params = dataclasses.replace(
        PARAMS, steps=4, checkpoint_every=4, assignment="atss", atss_top_k=4,
        loss=LossParams(classification="qfl", box_iou="giou", localization_weight=0.0),
        augment=AugmentParams(scale_crop=1.0, scale_crop_of="short_side", scale_crop_min=0.3, scale_crop_max=2.0))
    config = dataclasses.replace(TINY, head_norm="group")
    metrics = train(params, config, files, tmp_path / "detector", tmp_path / "checkpoints", None, val_files=files,
                    progress=False)
    assert all(np.isfinite(metrics[key]) for key in ("loss/total", "loss/localization", "val/loss/total"))
    assert metrics["loss/localization"] > 0  # the GIoU loss alone (smooth L1 weighted 0)
    assert json.loads((tmp_path / "detector" / "detector.json").read_text())["head_norm"] == "group"
