"""`facedet detect INPUT --out DIR [--model MODEL.tflite]`: run an exported face detector on photos,
folders of photos, videos or a photo's URL.

The model is any `.tflite` from `facedet.export.tflite` (uint8 input [1, H, W, 3],
TFLite_Detection_PostProcess outputs), run by facedet.runtime.tflite_detector (resize as its
export.json says, else plain resize); by default the released model, RELEASED_MODEL. The old form
`facedet detect MODEL.tflite INPUT` still works. Outputs (facedet.runtime.file_runner):

    --format json (default)  OUT/<name>.json + OUT/<name>.jpg (drawn) per image;
                             OUT/<name>.jsonl (a line per frame) + OUT/<name>.mp4 (drawn) per video
    --format wider           OUT/<event>/<stem>.txt, the WIDER FACE submission layout that
                             `facedet eval-wider --pred OUT` scores (<event>: the image's folder)
    --format coco            OUT/detections_coco.json (COCO results: image_id, category_id 1, bbox
                             x, y, w, h, score) + OUT/images_coco.json (image ids -> file names)

TensorFlow is imported only when the command runs, so `facedet --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from facedet.runtime.file_runner import (detect_each, detect_faces, detect_video, is_video, list_inputs,
                                    output_name)
from facedet.runtime.detector_protocol import RECOMMENDED_SCORE_THRESHOLD, Detector
from facedet.runtime.output_guard import OutputGuard

# The released real-face model (models/release/model_card.md): the phone-size int8 file, in this checkout.
RELEASED_MODEL = Path(__file__).resolve().parents[2] / "models" / "release" / "face_detector_int8_320.tflite"
FORMATS = ("json", "wider", "coco")
URL_SCHEMES = ("http", "https")
DOWNLOAD_TIMEOUT_S = 30.0
COCO_RESULTS, COCO_IMAGES = "detections_coco.json", "images_coco.json"


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The detect subcommand."""
    parser = subparsers.add_parser(
        "detect", help="find faces in images, folders, videos or a URL with an exported .tflite detector",
        usage="facedet detect INPUT --out DIR [--model MODEL.tflite] [--format {json,wider,coco}] [--recursive]\n"
              "                      [--score-threshold S] [--threads N]",
        description="Run an exported face detector on an image, every image and video in a directory, a video "
                    "file or an http(s) URL of an image. --format json (default) writes OUT/<image stem>.json "
                    "({\"image\", \"width\", \"height\", \"faces\": [{\"box_xywh\": [x, y, w, h] in pixels, "
                    "\"score\"}]}, best first) and OUT/<image stem>.jpg with the boxes and scores drawn; a video "
                    "gives OUT/<stem>.mp4 drawn and OUT/<stem>.jsonl, one such JSON line per frame "
                    "(with \"frame\" and \"time_s\"). --format wider writes the WIDER FACE submission layout "
                    "(OUT/<event>/<stem>.txt) that `facedet eval-wider --pred OUT` scores; --format coco a COCO "
                    "results JSON. With --recursive, every input in the directory's tree, its outputs at its "
                    "relative path (DIR/a/b.jpg -> OUT/a/b.json). detect never writes into the directory it "
                    "reads nor over a file it did not write. Exit status 1 if the model or an input cannot be "
                    "used (each named on one line), 2 for usage errors.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="an image, a video, a directory, or an http(s) URL of an image "
                             "(the old form MODEL.tflite INPUT is still read)")
    parser.add_argument("--model", metavar="MODEL.tflite", type=Path,
                        help=f"exported detector (default: the released model, "
                             f"{RELEASED_MODEL.relative_to(RELEASED_MODEL.parents[2])})")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--format", choices=FORMATS, default="json",
                        help="json: a JSON and a drawn copy per image (default); wider: the WIDER FACE "
                             "submission layout; coco: a COCO results JSON")
    parser.add_argument("--recursive", "-r", action="store_true",
                        help="read the directory's whole tree; outputs keep each input's relative path")
    parser.add_argument("--score-threshold", type=_threshold, default=RECOMMENDED_SCORE_THRESHOLD, metavar="S",
                        help=f"keep faces with score >= S (default {RECOMMENDED_SCORE_THRESHOLD}, the model card's "
                             f"recommended threshold; use 0.02 for --format wider/coco scoring)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="threads of the interpreter (XNNPACK) and of the resize (default 1)")
    return parser


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: hides what TensorFlow's C++ side prints while it loads
    (CPU / oneDNN banners, 'Created TensorFlow Lite XNNPACK delegate'). Python exceptions raised
    inside still propagate and are reported after it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def model_and_input(args: argparse.Namespace) -> tuple[Path, str]:
    """The model file and the one input, from `--model` or the old `MODEL.tflite INPUT` form.
    Raises ValueError (one line) for a missing model file or a wrong number of inputs."""
    inputs = list(args.inputs)
    model = args.model
    if model is None and len(inputs) == 2 and inputs[0].lower().endswith(".tflite"):
        model = Path(inputs.pop(0))
    if len(inputs) == 1 and inputs[0].lower().endswith(".tflite"):
        raise ValueError(f"{inputs[0]} is a model, not an image: give what to read too "
                         f"(facedet detect INPUT --model {inputs[0]} --out DIR)")
    if len(inputs) != 1:
        raise ValueError(f"give one input (an image, a video, a directory or a URL), got {len(inputs)}: "
                         f"{' '.join(inputs)}")
    model = model or RELEASED_MODEL
    if not model.is_file():
        hint = (" (the released model: check out models/release/, or pass --model MODEL.tflite, e.g. "
                "models/export/face_detector_int8.tflite after `dvc repro`)" if model == RELEASED_MODEL else "")
        raise ValueError(f"{model}: no such model file{hint}")
    return model, inputs[0]


def is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme.lower() in URL_SCHEMES


def download_image(url: str, folder: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch `url` into `folder`, named by the URL path's last part (or 'download'); ValueError (one
    line) on any network error, an HTTP error status or a timeout."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "download"
    target = folder / name
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except urllib.error.HTTPError as err:
        raise ValueError(f"{url}: cannot download (HTTP {err.code} {err.reason})") from None
    except urllib.error.URLError as err:
        raise ValueError(f"{url}: cannot download ({err.reason})") from None
    except (TimeoutError, OSError) as err:
        raise ValueError(f"{url}: cannot download ({err or type(err).__name__})") from None
    return target


def wider_name(image: Path, root: Path | None) -> Path:
    """OUT/<event>/<stem> of an image in the WIDER layout: its relative path, or, for an image at the top
    of the directory given (or given alone), that directory's (or its own folder's) name as event."""
    name = output_name(image, root)
    if len(name.parts) >= 2:
        return name
    event = (root if root is not None else image.resolve().parent).name or "images"
    return Path(event) / name


def run(args: argparse.Namespace) -> int:
    model, given = model_and_input(args)
    with tempfile.TemporaryDirectory(prefix="facedet-detect-") as downloads:
        labels = {}
        if is_url(given):
            local = download_image(given, Path(downloads))
            labels[local] = given
            inputs, root = [local], None
        else:
            inputs = list_inputs(given, recursive=args.recursive)
            root = Path(given) if Path(given).is_dir() else None
        guard = OutputGuard(args.out, [root] if root is not None else [], inputs)  # refuse before loading the model
        with quiet_native_stderr():
            from facedet.runtime.tflite_detector import TFLiteDetector

            detector = TFLiteDetector(model, num_threads=max(1, args.threads))
        return run_detector(args, detector, guard, inputs, root, labels)


def run_detector(args: argparse.Namespace, detector: Detector, guard: OutputGuard, inputs: list[Path],
                 root: Path | None,
                 labels: dict[Path, str]) -> int:
    """Detect in every input and write what --format asks; 1 if an input failed (each named on stderr)."""
    failed: list[ValueError] = []

    def report(err: ValueError) -> None:
        message = str(err)
        for local, label in labels.items():
            message = message.replace(str(local), label)
        failed.append(err)
        print(f"facedet detect: error: {message}", file=sys.stderr)

    videos = [p for p in inputs if is_video(p)]
    images = [p for p in inputs if not is_video(p)]
    if videos and args.format != "json":
        raise ValueError(f"--format {args.format} scores photos; {videos[0]} is a video (use --format json)")
    if args.format == "json":
        guard.check(output_name(v, root).with_suffix(s) for v in videos for s in (".mp4", ".jsonl"))
        for result in detect_faces(detector, images, args.out, args.score_threshold, on_error=report, root=root,
                                   labels=labels):
            print(f"{result.label or result.image}: {len(result.faces)} face{'s' * (len(result.faces) != 1)} -> "
                  f"{Path(args.out) / output_name(result.image, root)}.json")
        for video in videos:
            try:
                done = detect_video(detector, video, guard, output_name(video, root), args.score_threshold)
            except ValueError as err:
                report(err)
                continue
            print(f"{video}: {done.frames} frames, {done.faces} faces -> "
                  f"{Path(args.out) / output_name(video, root)}.{{mp4,jsonl}}")
    elif args.format == "wider":
        write_wider(detector, guard, images, root, args.score_threshold, report, labels)
    else:
        write_coco(detector, guard, images, root, args.score_threshold, report, labels)
    if failed and len(inputs) > 1:
        print(f"{len(failed)} of {len(inputs)} images not read (each named on stderr)")
    return 1 if failed else 0


def write_wider(detector: Detector, guard: OutputGuard, images: list[Path], root: Path | None, score_threshold: float,
                report: Callable[[ValueError], None], labels: dict[Path, str]) -> None:
    """OUT/<event>/<stem>.txt per image (facedet.evaluate.submission's format), each written atomically."""
    from facedet.evaluate.submission import format_prediction_file
    from facedet.process.atomic import write_text_atomic

    names = {image: Path("images", image.stem) if image in labels else wider_name(image, root) for image in images}
    guard.check(name.with_suffix(".txt") for name in names.values())
    count = 0
    for result, *_ in detect_each(detector, images, score_threshold, report, labels):
        name = names[result.image]
        write_text_atomic(guard.record(name.with_suffix(".txt")), format_prediction_file(name.name, result.faces))
        count += 1
    print(f"{count} prediction files in the WIDER FACE layout -> {guard.out_dir}/<event>/<stem>.txt "
          f"(score them: facedet eval-wider --pred {guard.out_dir} --gt GT_DIR)")


def write_coco(detector: Detector, guard: OutputGuard, images: list[Path], root: Path | None, score_threshold: float,
               report: Callable[[ValueError], None], labels: dict[Path, str]) -> None:
    """OUT/detections_coco.json (COCO results, image ids 1..N in input order) and OUT/images_coco.json
    (the COCO `images` and `categories` those ids refer to), written atomically."""
    from types import SimpleNamespace

    import numpy as np

    from facedet.data.wider_gt import eval_key
    from facedet.evaluate.coco_eval import coco_detections, coco_ground_truth
    from facedet.process.atomic import write_text_atomic

    guard.check([Path(COCO_RESULTS), Path(COCO_IMAGES)])
    found, detections = [], {}
    for result, *_ in detect_each(detector, images, score_threshold, report, labels):
        name = result.label or (output_name(result.image, root).as_posix() + result.image.suffix)
        found.append(SimpleNamespace(image=name, width=result.width, height=result.height, boxes_xywh=np.zeros((0, 4))))
        detections[eval_key(name)] = result.faces
    dataset = coco_ground_truth(found)
    write_text_atomic(guard.record(Path(COCO_IMAGES)),
                      json.dumps({k: dataset[k] for k in ("images", "categories")}, indent=1) + "\n")
    results = coco_detections(found, detections)
    write_text_atomic(guard.record(Path(COCO_RESULTS)), json.dumps(results) + "\n")
    print(f"{len(results)} detections in {len(found)} images -> {guard.out_dir / COCO_RESULTS} "
          f"(image ids: {guard.out_dir / COCO_IMAGES})")
