"""Training throughput: images/s of the real input pipeline + train step, against the same compiled
train step fed one batch of in-memory tensors over and over, measured in the same run. The ratio
says whether the input pipeline holds training back (target >= 0.95 on the training machine).
Also: the input pipeline alone; with --breakdown the step split into forward, loss + backward and
the optimizer's apply; with --compare-batch-norm the in-memory step with Keras 3's own batch norm
against the fused kernel training uses (`train.fused_batch_norm`); with --trace DIR a TensorFlow
profile of a few steps and the op time by kind (batch norm, convolutions, ...) and by op type.

    python bench/train_throughput.py [--preset NAME] [--batch-size N] [--steps 20] [--rounds 3]
                                     [--tfrecords data/tfrecords] [--breakdown] [--compare-batch-norm]
                                     [--trace DIR] [--intra-op N] [--inter-op N]

Reads params.yaml (`model.preset`, `train.*`) unless overridden, and the shard stage's
data/tfrecords/train.record-*. Pipeline and in-memory rounds alternate (`--rounds`, `--steps` timed
steps each after 3 warm-up steps); medians are reported. The pipeline's iterator is dropped before
each in-memory round, so its background threads do not slow that round down.
"""

from __future__ import annotations

import argparse
import collections
import gc
import glob
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="configs/<preset>.yaml (default: params.yaml model.preset)")
    parser.add_argument("--batch-size", type=int, help="default: params.yaml train.batch_size")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="pipeline / in-memory rounds (default 3)")
    parser.add_argument("--tfrecords", default="data/tfrecords", help="directory of train.record-* shards")
    parser.add_argument("--breakdown", action="store_true", help="time forward, loss + backward, apply")
    parser.add_argument("--compare-batch-norm", action="store_true",
                        help="time the in-memory step with Keras 3's batch norm and with the fused kernel")
    parser.add_argument("--trace", metavar="DIR", help="write a TensorFlow profile of 5 steps to DIR, list top ops")
    parser.add_argument("--intra-op", type=int, default=0, help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--inter-op", type=int, default=0, help="TF inter-op threads (0: TF's default)")
    return parser.parse_args(argv)


def timed(function, steps: int, warmup: int = 3) -> float:
    """Median seconds of one call (each call's result fetched, so the work is done)."""
    for _ in range(warmup):
        _fetch(function())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _fetch(function())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fetch(result) -> None:
    import tensorflow as tf

    for value in tf.nest.flatten(result):
        value.numpy()


def op_time(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """Milliseconds of TF op time (summed over the executor's threads) in the newest profile under
    `trace_dir`, by kind (batch norm, convolutions, ...) and by op type."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    kinds: collections.Counter = collections.Counter()
    types: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "<op name>:<op type>"
                if ":" not in name or name.startswith("ExecutorState"):
                    continue
                op_type = name.rsplit(":", 1)[1]
                ms = event.duration_ps / 1e9
                types[op_type] += ms
                kinds[_kind(name, op_type)] += ms
    return kinds, types


def _kind(name: str, op_type: str) -> str:
    if re.search(r"_BN|/bn_|BatchNorm|moments|batchnorm", name):
        return "batch norm (forward + backward)"
    if "Conv" in op_type:
        return "convolutions (forward + backward)"
    if "Relu" in op_type:
        return "ReLU6"
    if re.search(r"Adam|RMSprop|SGD|optimizer", name, re.IGNORECASE):
        return "optimizer"
    return "other (loss, L2, heads' reshapes, ...)"


def main(argv=None) -> None:
    args = parse_args(argv)
    os.chdir(ROOT)
    import tensorflow as tf

    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    import keras

    from facedet.data.tfrecord_schema import list_shards
    from facedet.model.anchors import anchor_boxes
    from facedet.model.config import load_preset
    from facedet.model.losses import detection_loss
    from facedet.params.loader import load_section
    from facedet.params.sections import ModelParams, TrainParams
    from facedet.train.fused_batch_norm import fused_batch_norm
    from facedet.train.input import make_dataset
    from facedet.train.loop import build_train_state, make_train_step

    params = load_section("train", TrainParams)
    if args.batch_size:
        params = TrainParams(**{**params.__dict__, "batch_size": args.batch_size})
    preset = args.preset or load_section("model", ModelParams).preset
    config = load_preset(preset)
    files = list_shards(args.tfrecords, "train")
    if not files:
        raise SystemExit(f"no {args.tfrecords}/train.record-* shards: run `dvc repro shard` first")
    batch_size = params.batch_size
    print(f"{preset}: input {config.input_size}, alpha {config.alpha}, batch {batch_size}, "
          f"{len(anchor_boxes(config))} anchors; TF {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
          f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}, "
          f"fused batch norm {params.fused_batch_norm}")

    keras.utils.set_random_seed(params.seed)
    strategy = tf.distribute.get_strategy()
    state = build_train_state(params, config, strategy)
    state.optimizer.learning_rate.assign(params.learning_rate * 0.01)
    dataset = make_dataset(files, anchor_boxes(config), config.input_size, batch_size, training=True,
                           augment=params.augment, seed=params.seed, positive_iou=params.positive_iou,
                           negative_iou=params.negative_iou, assignment=params.assignment,
                           atss_top_k=params.atss_top_k)
    in_memory = tf.data.Dataset.from_tensors(next(iter(dataset))).repeat()
    memory_iterator = iter(strategy.experimental_distribute_dataset(in_memory))

    with fused_batch_norm(state.model, params.fused_batch_norm):  # as training runs the step
        train_step = make_train_step(state, params, strategy)
        input_only, pipeline, memory = [], [], []
        for _ in range(args.rounds):
            iterator = iter(dataset)
            input_only.append(timed(lambda: next(iterator)[0], args.steps))
            del iterator
            iterator = iter(strategy.experimental_distribute_dataset(dataset))
            pipeline.append(timed(lambda: train_step(iterator), args.steps))
            del iterator
            gc.collect()
            memory.append(timed(lambda: train_step(memory_iterator), args.steps))
        rate = {name: batch_size / statistics.median(times)
                for name, times in (("input", input_only), ("pipeline", pipeline), ("memory", memory))}
        print(f"input pipeline alone:            {rate['input']:7.1f} images/s")
        print(f"train step, real input pipeline: {rate['pipeline']:7.1f} images/s")
        print(f"train step, in-memory tensors:   {rate['memory']:7.1f} images/s")
        print(f"ratio pipeline / in-memory:      {rate['pipeline'] / rate['memory']:7.3f}  (target >= 0.95)")

        if args.breakdown:
            images, targets = next(iter(in_memory))
            model = state.model

            @tf.function
            def forward():
                return model(images, training=True)["class_logits"]

            @tf.function
            def forward_backward():
                with tf.GradientTape() as tape:
                    outputs = model(images, training=True)
                    loss = detection_loss(targets["box_targets"], targets["labels"], outputs["box_encodings"],
                                          outputs["class_logits"], params.loss)["total"]
                return tape.gradient(loss, model.trainable_variables)  # all of them: none pruned

            full = statistics.median(memory)
            fwd = timed(forward, args.steps)
            fwd_bwd = timed(forward_backward, args.steps)
            print(f"step breakdown, ms: forward {1000 * fwd:.0f} + loss and backward {1000 * (fwd_bwd - fwd):.0f} "
                  f"+ L2, optimizer apply and the rest {1000 * (full - fwd_bwd):.0f} = {1000 * full:.0f}")

        if args.trace:
            tf.profiler.experimental.start(args.trace)
            for _ in range(5):
                _fetch(train_step(memory_iterator))
            tf.profiler.experimental.stop()
            print_op_time(args.trace)

    if args.compare_batch_norm:
        for fused in (False, True):
            with fused_batch_norm(state.model, fused):
                step = make_train_step(state, params, strategy)  # traced anew with this batch norm
                seconds = timed(lambda: step(memory_iterator), args.steps)
            print(f"in-memory step, {'fused batch norm' if fused else 'Keras 3 batch norm'}: "
                  f"{1000 * seconds:5.0f} ms, {batch_size / seconds:6.1f} images/s")
            if args.trace:
                trace = f"{args.trace}/{'fused' if fused else 'keras'}_batch_norm"
                with fused_batch_norm(state.model, fused):
                    tf.profiler.experimental.start(trace)
                    for _ in range(5):
                        _fetch(step(memory_iterator))
                    tf.profiler.experimental.stop()
                print_op_time(trace)


def print_op_time(trace_dir: str) -> None:
    kinds, types = op_time(trace_dir)
    total = sum(kinds.values())
    print(f"op time over 5 steps, summed over threads: {total:.0f} ms (profile in {trace_dir})")
    for name, ms in kinds.most_common():
        print(f"  {name:36s} {ms:7.0f} ms  {100 * ms / total:5.1f}%")
    print("  top op types: " + ", ".join(f"{name} {100 * ms / total:.0f}%" for name, ms in types.most_common(8)))


if __name__ == "__main__":
    main()
