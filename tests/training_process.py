"""A training process as `python -m stages.train` runs it, on TINY and the synthetic shards of
tests/face_shards.py, for the tests that kill, resume or distribute training:

    python tests/training_process.py PARAMS_JSON ROOT [--logical-cpus N]

trains on ROOT/train.record-* into ROOT/detector, ROOT/checkpoints and ROOT/dvclive, and prints
`metrics {...}` (the last logged metrics, as JSON) as its last line. facedet must be on PYTHONPATH."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", type=json.loads, help="the TrainParams fields, as a JSON object")
    parser.add_argument("root", type=Path, help="holds train.record-*; gets detector/, checkpoints/, dvclive/")
    parser.add_argument("--logical-cpus", type=int, help="split the CPU into N logical devices (MirroredStrategy)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.logical_cpus:  # before anything starts TensorFlow's runtime, which fixes the devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)

    from facedet.params.sections import TrainParams
    from facedet.train.loop import train

    from face_shards import TINY

    root = args.root
    metrics = train(TrainParams(**args.params), TINY, sorted(map(str, root.glob("train.record-*"))),
                    root / "detector", root / "checkpoints", root / "dvclive", progress=False)
    print("metrics", json.dumps(metrics))


if __name__ == "__main__":
    main()
