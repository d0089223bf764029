"""Peak memory of exporting the default preset at square input sizes, as the export stage does (int8 and
float files, calibration, verification), each size in a fresh process; next to it, what
`facedet.export.tflite.export_memory_need` (the export stage's limit) predicts.

    python bench/export_memory.py [--sizes 256 512 1024] [--images 8]

The weights are untrained (memory does not depend on their values) and the calibration images random.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

ONE_SIZE = """
import resource, sys
from pathlib import Path
import tempfile
import numpy as np
from facedet.export.tflite import export_tflite, verify_tflite
from facedet.model.anchors import anchor_boxes
from facedet.model.config import load_preset
from facedet.model.ssd import at_input_size, build_detector
from facedet.params.sections import ExportParams
size, count = int(sys.argv[1]), int(sys.argv[2])
preset = load_preset("ssd_mobilenet_v2_256", "configs")
model, config = at_input_size(build_detector(preset), preset, size)
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
params = ExportParams()
with tempfile.TemporaryDirectory() as out:
    for quantize in ("int8", "float"):
        path = export_tflite(model, anchor_boxes(config), images, Path(out) / f"{quantize}.tflite", params, quantize)
        verify_tflite(path, quantize, images[:2], keras_model=model, score_threshold=params.score_threshold)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--images", type=int, default=8, help="calibration images (default 8)")
    args = parser.parse_args()
    from facedet.export.tflite import export_memory_need

    print(f"{'size':>6} {'peak GB':>8} {'predicted GB':>13}")
    for size in args.sizes:
        run = subprocess.run([sys.executable, "-c", ONE_SIZE, str(size), str(args.images)], capture_output=True,
                             text=True, check=True)
        peak = int(run.stdout.strip().splitlines()[-1])
        print(f"{size:>6} {peak / 2**30:>8.2f} {export_memory_need(size, args.images) / 2**30:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
