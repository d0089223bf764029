"""Where `invoke` goes, and what the model's levers cost: untrained detectors of a preset, exported to
int8 by the project's own export code (facedet.export.tflite), timed in one interleaved run.

    python bench/model_costs.py [--preset ssd_mobilenet_v2_native_256] [--rounds 5] [--runs 5] [--out DIR]
                                [--only NAME ...] [--reuse] [--photos ../shared/realfaces/widerface/WIDER_val/images]

Untrained is enough: the work of every layer is fixed by the shapes, not by the weights. The one
exception is the TFLite_Detection_PostProcess op, whose time depends on how many of its anchors score
at or above its score threshold (decode, sort and NMS run on those candidates only), which a trained
model decides photo by photo. So each file's class head is set to give every anchor the same score,
below the threshold ('none': the op's floor) or above it ('all': its ceiling), and the table shows
both where the op matters.

Files (each `invoke()` of a uint8 input, 1 thread unless the name says otherwise):
- size_S: the preset at a square S x S input (anchors at the same pixel sizes, as the export stage
  makes its `input_sizes` files); size_640x480: a landscape input (height 480), the photo-shaped
  alternative to letterboxing into 640x640;
- backbone / network at 640: sub-models, for the split of `invoke` into the MobileNetV2 backbone (up to
  its stride-32 tap), the feature pyramid + heads (network - backbone) and the post-process op
  (whole file - network);
- the levers at 640: one anchor per cell (no interpolated square), head channels x0.5 / x2, no
  stride-8 level, the op's max_detections (100 = params.yaml; 300) with every anchor a candidate,
  XNNPACK off (the interpreter's builtin kernels), 2 threads.

Timing: every file gets its own interpreter, warmed up; then `--rounds` rounds, each timing `--runs`
calls of every file in turn (interleaved, so a busy spell of a shared machine hits all alike).
Prints median and p90 ms per call, ns per input pixel and the anchor count; `--json` writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_PHOTOS = ROOT.parent / "shared" / "realfaces" / "widerface" / "WIDER_val" / "images"
CALIBRATION_IMAGES = 4  # int8 calibration; the ranges do not change the time of an op
BASE_SIDE = 640
SCORE_NONE, SCORE_ALL = 0.005, 0.5  # every anchor's score: below / above the op's 0.02 threshold


@dataclass(frozen=True)
class Variant:
    """One file to export and time.

    height, width: model input, px; config_changes: DetectorConfig fields to replace; part: 'file'
    (the whole export), 'network' (no post-process op) or 'backbone' (MobileNetV2 up to stride 32);
    candidates: 'none' / 'all' anchors at or above the op's threshold; max_detections: the op's;
    xnnpack: the interpreter's default delegate; threads: interpreter threads; file_of: the variant
    whose file this one times (interpreter settings only)."""

    name: str
    height: int = BASE_SIDE
    width: int = BASE_SIDE
    config_changes: tuple[tuple[str, object], ...] = ()
    part: str = "file"
    candidates: str = "none"
    max_detections: int = 100
    xnnpack: bool = True
    threads: int = 1
    file_of: str = ""  # time the file of this other variant (same model, other interpreter settings)


def variants() -> list[Variant]:
    sizes = [Variant(f"size_{s}", s, s) for s in (256, 320, 480, 640, 768, 800, 1024)]
    return [
        *sizes,
        Variant("size_640x480", 480, 640),
        Variant("size_640_all_candidates", candidates="all"),
        Variant("size_640x480_all_candidates", 480, 640, candidates="all"),
        Variant("backbone_640", part="backbone"),
        Variant("network_640", part="network"),
        Variant("one_anchor_per_cell_640", config_changes=(("interpolated_scale", False),)),
        Variant("one_anchor_per_cell_640_all_candidates", config_changes=(("interpolated_scale", False),),
                candidates="all"),
        Variant("head_channels_x0.5_640", config_changes=(("head_channels", 0.5),)),
        Variant("head_channels_x2_640", config_changes=(("head_channels", 2.0),)),
        Variant("no_stride8_640", config_changes=(("feature_strides", "drop8"),)),
        Variant("no_stride8_640_all_candidates", config_changes=(("feature_strides", "drop8"),), candidates="all"),
        Variant("max_detections_300_640_all_candidates", candidates="all", max_detections=300),
        Variant("xnnpack_off_640", xnnpack=False, file_of="size_640"),
        Variant("threads_2_640", threads=2, file_of="size_640"),
    ]


@dataclass
class Timed:
    variant: Variant
    path: Path
    anchors: int
    size_kb: float
    times_ms: list[float] = field(default_factory=list)


def variant_config(base, variant: Variant):
    """The preset's DetectorConfig at the variant's (longer) side, its changes applied."""
    config = base.at_input_size(max(variant.height, variant.width))
    changes = {}
    for key, value in variant.config_changes:
        if key == "head_channels":
            changes[key] = int(base.head_channels * value)
        elif key == "feature_strides":
            changes[key] = tuple(s for s in base.feature_strides if s != 8)
        else:
            changes[key] = value
    return dataclasses.replace(config, **changes)


def grid_anchors(config, height: int, width: int) -> np.ndarray:
    """float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]` anchors of `config` on a height x width
    input, in head output order (layer, row, column, anchor type); box sides keep their pixel sizes
    (facedet.model.anchors.layer_box_shapes gives them as fractions of the square `input_size`)."""
    from facedet.model.anchors import anchor_boxes, layer_box_shapes

    if height == width == config.input_size:
        return anchor_boxes(config)
    out = []
    for stride, shapes in zip(config.feature_strides, layer_box_shapes(config)):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        yc, xc = np.meshgrid((np.arange(rows) + 0.5) / rows, (np.arange(cols) + 0.5) / cols, indexing="ij")
        hw = np.asarray(shapes) * [config.input_size / height, config.input_size / width]  # (K, 2)
        yc, xc = yc[:, :, None], xc[:, :, None]
        h, w = hw[None, None, :, 0], hw[None, None, :, 1]
        boxes = np.stack(np.broadcast_arrays(yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2), axis=-1)
        out.append(boxes.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def calibration_photos(photos_dir: Path, height: int, width: int) -> list[np.ndarray]:
    """CALIBRATION_IMAGES uint8 (height, width, 3) inputs: real photos letterboxed if there are any,
    else noise (the ranges they calibrate do not change what an op costs)."""
    from PIL import Image

    from facedet.runtime.photo_fit import fit_to_input

    files = sorted(photos_dir.glob("*/*.jpg"))[:CALIBRATION_IMAGES] if photos_dir.is_dir() else []
    if not files:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (height, width, 3)).astype(np.uint8) for _ in range(CALIBRATION_IMAGES)]
    images = []
    for path in files:
        with Image.open(path) as image:
            images.append(fit_to_input(np.asarray(image.convert("RGB")), (height, width), "letterbox")[0])
    return images


def build_model(config, variant: Variant, photos: list[np.ndarray]):
    """The untrained Keras detector at the variant's input, every anchor scoring as `candidates` says.

    Its batch-norm statistics are those of `photos` (uint8 (H, W, 3) at the input): a fresh model's
    unit variances shrink the deep activations to ~0, so two photos' boxes would quantize alike and
    the export's check that the outputs depend on the input would fail."""
    import keras

    from facedet.model.ssd import BATCH_NORM_MOMENTUM, build_detector

    keras.utils.set_random_seed(0)
    model = build_detector(config)
    if (variant.height, variant.width) != (config.input_size, config.input_size):
        model = keras.models.clone_model(model, input_tensors=keras.Input((variant.height, variant.width, 3)))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become these photos'
    model(np.stack(photos).astype(np.float32), training=True)
    for layer in norms:
        layer.momentum = BATCH_NORM_MOMENTUM
    head = model.get_layer("class_predictor")
    kernel, bias = head.get_weights()
    score = SCORE_ALL if variant.candidates == "all" else SCORE_NONE
    head.set_weights([kernel * 1e-3, np.full_like(bias, math.log(score / (1 - score)))])
    return model


def convert_part(model, part: str, config, calibration: list[np.ndarray], path: Path) -> None:
    """int8 .tflite of a sub-model ('network': both heads' raw outputs; 'backbone': the stride-32
    tap), uint8 input as in the shipped file."""
    import keras
    import tensorflow as tf

    from facedet.export.tflite import convert_saved_model
    from facedet.model.ssd import STRIDE32_TAPS

    if part == "backbone":
        model = keras.Model(model.input, model.get_layer(STRIDE32_TAPS[config.stride32_tap]).output)
    height, width = model.input_shape[1:3]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda image: model(tf.cast(image, tf.float32), training=False),
                         input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8, name="image")])
    with tempfile.TemporaryDirectory(prefix="facedet-costs-") as tmp:
        archive.write_out(tmp, verbose=False)
        path.write_bytes(convert_saved_model(tmp, "int8", calibration))


def export_variant(base, variant: Variant, photos_dir: Path, out_dir: Path, reuse: bool = False) -> Timed:
    """Export the variant's file into `out_dir` (reuse: keep one already there)."""
    from facedet.export.tflite import export_tflite
    from facedet.params.sections import ExportParams

    config = variant_config(base, variant)
    anchors = grid_anchors(config, variant.height, variant.width)
    path = out_dir / f"{variant.file_of or variant.name}.tflite"
    if (reuse or variant.file_of) and path.is_file():
        return Timed(variant, path, len(anchors), path.stat().st_size / 1024)
    calibration = calibration_photos(photos_dir, variant.height, variant.width)
    model = build_model(config, variant, calibration)
    if variant.part == "file":
        export_tflite(model, anchors, calibration, path, ExportParams(max_detections=variant.max_detections))
    else:
        convert_part(model, variant.part, config, calibration, path)
    return Timed(variant, path, len(anchors), path.stat().st_size / 1024)


def interpreter_call(timed: Timed):
    """A zero-argument call that runs one `invoke()` of the file on a fixed noise input."""
    import tensorflow as tf

    from facedet.runtime.tflite_detector import quiet_interpreter_deprecation

    resolver = (tf.lite.experimental.OpResolverType.AUTO if timed.variant.xnnpack
                else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    with quiet_interpreter_deprecation():
        interpreter = tf.lite.Interpreter(model_path=str(timed.path), num_threads=timed.variant.threads,
                                          experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    interpreter.set_tensor(inp["index"], np.random.default_rng(0).integers(0, 256, inp["shape"]).astype(np.uint8))
    return interpreter.invoke


def time_interleaved(files: list[Timed], rounds: int, runs: int, warmup: int = 3) -> None:
    calls = [interpreter_call(timed) for timed in files]
    for call in calls:
        for _ in range(warmup):
            call()
    for round_index in range(rounds):
        order = list(range(len(files)))
        order = order[round_index % len(order):] + order[:round_index % len(order)]
        for i in order:
            for _ in range(runs):
                started = time.perf_counter()
                calls[i]()
                files[i].times_ms.append((time.perf_counter() - started) * 1000)


def summary(timed: Timed) -> dict:
    v = timed.variant
    median = statistics.median(timed.times_ms)
    return {"file": v.name, "input": f"{v.width}x{v.height}", "part": v.part, "anchors": timed.anchors,
            "candidates": v.candidates, "max_detections": v.max_detections, "xnnpack": v.xnnpack,
            "threads": v.threads, "size_kb": round(timed.size_kb, 1), "ms_median": round(median, 2),
            "ms_p90": round(float(np.percentile(timed.times_ms, 90)), 2),
            "ns_per_px": round(median * 1e6 / (v.height * v.width), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ssd_mobilenet_v2_native_256", help="configs/<preset>.yaml")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS,
                        help="photos (<event>/<name>.jpg) to calibrate int8 with (noise if absent)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per file and round (default 5)")
    parser.add_argument("--only", nargs="*", help="time only these files (names in the table)")
    parser.add_argument("--out", type=Path, help="keep the .tflite files here (default: a temporary directory)")
    parser.add_argument("--reuse", action="store_true", help="time the files already in --out instead of exporting them")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    from facedet.model.config import load_preset
    from facedet.params.loader import ParamsError

    try:
        base = load_preset(args.preset)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    chosen = [v for v in variants() if not args.only or v.name in args.only]
    unknown = sorted(set(args.only or ()) - {v.name for v in chosen})
    if unknown:
        print(f"error: unknown files {unknown}; known: {[v.name for v in variants()]}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="facedet-costs-") as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for variant in chosen:
            started = time.perf_counter()
            files.append(export_variant(base, variant, args.photos, out_dir, args.reuse))
            print(f"exported {variant.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        time_interleaved(files, args.rounds, args.runs)
    rows = [summary(timed) for timed in files]
    print(f"preset {args.preset}, untrained, int8; ms per invoke() over {args.rounds} interleaved rounds x "
          f"{args.runs} calls")
    print("| file | input | anchors | candidates | max_det | XNNPACK | threads | size KB | median ms | p90 ms | ns/px |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['file']} | {row['input']} | {row['anchors']} | {row['candidates']} | {row['max_detections']} | "
              f"{'on' if row['xnnpack'] else 'off'} | {row['threads']} | {row['size_kb']:.0f} | {row['ms_median']:.1f} | "
              f"{row['ms_p90']:.1f} | {row['ns_per_px']:.0f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
