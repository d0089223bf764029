"""The model card: what the shipped face detector is, how well it does, and where it came from.

`build_model_card(...)` gathers, as one JSON-able dict:
- the model: architecture, preset and resolved detector config (`detector.json`), labels;
- each exported .tflite: size (KB), sha256, input shape/dtype and format (stretch or letterbox),
  the four outputs, the packed metadata, median invoke latency on this machine (1 thread);
- metrics: the float Keras model (reports/evaluate/metrics.json) and the shipped .tflite files
  (reports/evaluate_tflite/metrics.json: int8, float, int8 - float, and the same at each extra
  export size), with the input size each was scored at;
- lineage: the git commit (and whether the work tree differs from it), the dataset source and the
  DVC hashes of data/raw and data/tfrecords as recorded in dvc.lock, every param of params.yaml.

`render_markdown(card)` turns it into models/model_card.md. Missing inputs (no dvc.lock, no git,
no metrics yet) are recorded as such, never guessed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from facedet import __version__
from facedet.params.loader import PARAMS_FILE, read_params_file
from facedet.params.sections import SOURCE_ALIASES
from facedet.pipeline.atomic import write_text_atomic
from facedet.pipeline.hashing import sha256_of
from facedet.pipeline.paths import CONFIGS_DIR, MODEL_DIR, RAW_DIR, TFRECORD_DIR

DATA_OUTS = (str(RAW_DIR), str(TFRECORD_DIR))  # as dvc.lock names them
PIPELINE_PRODUCTS = ("dvc.lock", "reports/", "dvclive/")  # rewritten by `dvc repro`: not "dirty code"
OUTPUTS_CONTRACT = {
    "detection_boxes": "float32 [1, N, 4] normalised [ymin, xmin, ymax, xmax] (metadata name 'location')",
    "detection_classes": "float32 [1, N] 0-based class id, 0 = face ('category', label file labels.txt)",
    "detection_scores": "float32 [1, N] sigmoid score, descending ('score')",
    "num_detections": "float32 [1] number of valid rows N' <= N ('number of detections')",
}
INPUT_FORMATS = {
    "stretch": "RGB uint8 pixels 0..255, the whole image resized to the input (plain bilinear, aspect not kept)",
    "letterbox": "RGB uint8 pixels 0..255, the whole image resized to fit the input with its aspect kept (plain "
                 "bilinear, longer side = input side), at the top-left of a grey (128) canvas",
}
NORMALISATION = "normalisation to [-1, 1] happens inside the model (metadata: mean 127.5, std 127.5)"
DATASET_SOURCES = {
    "synthetic": "synthetic dataset generated offline in the official WIDER FACE layout (facedet.data.synthetic)",
    "widerface": "WIDER FACE (shuoyang1213.me/WIDERFACE; licence CC BY-NC-ND 4.0 via the HuggingFace mirror)",
    "local": "a WIDER FACE-layout copy read from disk (data.local.path; sha256 of every file in data/raw/sources.json)",
}


def git_lineage(repo: str | os.PathLike = ".") -> dict[str, Any]:
    """{'commit': HEAD sha or None, 'dirty': bool or None, 'dirty_paths': [...]} of the work tree.

    Dirty means tracked or untracked (not ignored) files differ from HEAD, outside the files that
    `dvc repro` itself rewrites (PIPELINE_PRODUCTS)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    if commit is None or status is None:
        return {"commit": None, "dirty": None, "dirty_paths": [],
                "note": "not a git work tree, or no commit yet"}
    paths = sorted({line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()})
    paths = [p for p in paths if not p.startswith(PIPELINE_PRODUCTS)]
    return {"commit": commit.strip(), "dirty": bool(paths), "dirty_paths": paths[:50]}


def dvc_lock_hashes(lock_path: str | os.PathLike = "dvc.lock", paths: Sequence[str] = DATA_OUTS) -> dict[str, Any]:
    """The hashes DVC recorded for `paths` among the stage outs of dvc.lock:
    {'lock': path, 'found': bool, 'outs': {path: {'stage', 'md5', 'size', 'nfiles'} or None}}."""
    lock_path = Path(lock_path)
    outs: dict[str, Any] = {path: None for path in paths}
    if not lock_path.is_file():
        return {"lock": str(lock_path), "found": False, "outs": outs}
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    for stage, entry in (lock.get("stages") or {}).items():
        for out in (entry or {}).get("outs") or []:
            if out.get("path") in outs:
                outs[out["path"]] = {"stage": stage, "md5": out.get("md5"), "size": out.get("size"),
                                     "nfiles": out.get("nfiles")}
    return {"lock": str(lock_path), "found": True, "outs": outs}


def median_invoke_ms(model_path: str | os.PathLike, num_threads: int = 1, runs: int = 50, warmup: int = 5) -> float:
    """Median wall time of one `invoke()` (the whole graph, post-process op included) on a mid-grey
    image, in ms."""
    import numpy as np

    from facedet.runtime.tflite_detector import load_interpreter

    interpreter, _ = load_interpreter(model_path, num_threads=num_threads)
    (inp,) = interpreter.get_input_details()
    interpreter.set_tensor(inp["index"], np.full(inp["shape"], 128, inp["dtype"]))
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        interpreter.invoke()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def tflite_facts(model_path: str | os.PathLike, latency_runs: int = 50) -> dict[str, Any]:
    """Size, hash, input, outputs, packed metadata and 1-thread latency of an exported detector."""
    from facedet.export.metadata import MetadataWriterUnavailable, read_detector_metadata
    from facedet.runtime.tflite_detector import load_interpreter, manifest_entry

    path = Path(model_path)
    resize = (manifest_entry(path) or {}).get("resize", "stretch")
    interpreter, outputs = load_interpreter(path)
    (inp,) = interpreter.get_input_details()
    try:
        meta = read_detector_metadata(path)
        metadata = None if meta is None else {"labels": meta.labels, "norm_mean": meta.norm_mean,
                                              "norm_std": meta.norm_std, "name": meta.name,
                                              "version": meta.version, "description": meta.description}
    except MetadataWriterUnavailable as err:
        metadata = {"unreadable": str(err)}
    return {
        "path": str(path),
        "size_kb": round(path.stat().st_size / 1024, 1),
        "sha256": sha256_of(path),
        "input": {"shape": [int(v) for v in inp["shape"]], "dtype": inp["dtype"].__name__, "resize": resize,
                  "format": f"{INPUT_FORMATS[resize]}; {NORMALISATION}"},
        "outputs": {name: {"shape": [int(v) for v in d["shape"]], "dtype": d["dtype"].__name__}
                    for name, d in outputs.items()},
        "metadata": metadata,
        "latency_ms_1_thread": median_invoke_ms(path, 1, runs=latency_runs) if latency_runs else None,
    }


def read_json_if_present(path: str | os.PathLike) -> Any:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


def build_model_card(*, params: Mapping[str, Any], detector_config: Mapping[str, Any],
                     preset_config: Mapping[str, Any] | None, tflite_files: Mapping[str, str | os.PathLike],
                     keras_metrics: Mapping[str, Any] | None, tflite_metrics: Mapping[str, Any] | None,
                     lock_path: str | os.PathLike = "dvc.lock", repo: str | os.PathLike = ".",
                     latency_runs: int = 50) -> dict[str, Any]:
    """The card as a JSON-able dict (see the module docstring). tflite_files: {variant: path}, variants
    'int8', 'float' (trained input size) and 'int8_<size>', 'float_<size>' (other export sizes)."""
    source = (params.get("data") or {}).get("source", "unknown")
    source = SOURCE_ALIASES.get(source, source)
    return {
        "model": {
            "name": "facedet face detector",
            "version": __version__,
            "task": "face detection (single class 'face'), boxes in normalised [ymin, xmin, ymax, xmax]",
            "architecture": f"SSD, MobileNetV2 backbone (alpha {detector_config.get('alpha')}), "
                            f"feature strides {detector_config.get('feature_strides')}",
            "preset": (params.get("model") or {}).get("preset"),
            "preset_config": dict(preset_config) if preset_config is not None else None,
            "detector_config": dict(detector_config),
            "labels": ["face"],
            "outputs": OUTPUTS_CONTRACT,
        },
        "files": {variant: tflite_facts(path, latency_runs) for variant, path in tflite_files.items()},
        "metrics": {"keras_float": keras_metrics, "tflite": tflite_metrics},
        "data": {"source": source, "description": DATASET_SOURCES.get(source, source),
                 "dvc": dvc_lock_hashes(lock_path)},
        "code": git_lineage(repo),
        "params": dict(params),
        "measured_on": machine_description(),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _metrics_table(card: Mapping[str, Any]) -> list[str]:
    keras_metrics = card["metrics"].get("keras_float") or {}
    tflite = card["metrics"].get("tflite") or {}
    keras_size = keras_metrics.get("input_size")
    columns = [(f"Keras float{f' at {keras_size}' if keras_size else ''}", keras_metrics)]
    # Per export size ('' = the trained size, then '_640' ...): float, int8 (shipped), int8 - float.
    suffixes = dict.fromkeys(v[len("int8"):] for v in tflite if v.startswith("int8") and
                             not v.startswith("int8_minus_float"))
    for suffix in suffixes:
        for name, variant in (("TFLite float", f"float{suffix}"), ("TFLite int8 (shipped)", f"int8{suffix}")):
            metrics = tflite.get(variant) or {}
            columns.append((f"{name} `{metrics['file']}`" if "file" in metrics else name, metrics))
        columns.append((f"int8 - float{f' at {suffix[1:]}' if suffix else ''}",
                        tflite.get(f"int8_minus_float{suffix}") or {}))
    names = list(dict.fromkeys(k for _, m in columns for k in m if k not in ("file", "resize")))
    if not names:
        return ["No metrics yet (run the evaluate and evaluate_tflite stages)."]
    lines = ["| metric | " + " | ".join(c for c, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(m.get(name)) for _, m in columns) + " |" for name in names]
    return lines


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown (models/model_card.md)."""
    model, files, data, code = card["model"], card["files"], card["data"], card["code"]
    lines = [
        f"# Model card: {model['name']} {model['version']}", "",
        f"{model['architecture']}, preset `{model['preset']}`, detecting faces (one class, `face`) in RGB images. "
        "Exported to TFLite ending in the `TFLite_Detection_PostProcess` op, with TFLite model metadata "
        "(label file, normalisation): MediaPipe Tasks' ObjectDetector and the TFLite Task Library load it as it is.",
        "",
        "## Files", "",
        "| variant | file | size (KB) | input | median latency, 1 thread (ms) | sha256 |", "|---|---|---|---|---|---|",
    ]
    for variant, f in files.items():
        shape = "x".join(str(v) for v in f["input"]["shape"])
        lines.append(f"| {variant} | `{f['path']}` | {f['size_kb']} | {f['input']['dtype']} {shape} "
                     f"{f['input'].get('resize', 'stretch')} | {_fmt(f['latency_ms_1_thread'])} | `{f['sha256'][:16]}…` |")
    lines += ["", "Latency: median of `invoke()` (whole graph, post-process included), measured on "
              f"{card['measured_on']}.",
              "", "## Input and outputs", "",
              *[f"- Input `image` of `{Path(f['path']).name}`: {'x'.join(map(str, f['input']['shape']))}, "
                f"{f['input']['format']}." for f in files.values()],
              *[f"- `{name}`: {text}" for name, text in model["outputs"].items()],
              "- Boxes map back to the original image by scaling with its width and height.",
              "", "## Metrics (val split, official WIDER FACE protocol and COCO AP)", "",
              "Each column is one model scored as it is shipped, at the input size in its `input_size` row "
              "(the .tflite files: their own fixed input; the Keras model: `evaluate.input_size`).", "",
              *_metrics_table(card), "",
              "## Data", "", f"- Source: `{data['source']}`: {data['description']}."]
    dvc = data["dvc"]
    if not dvc["found"]:
        lines.append(f"- DVC hashes: {dvc['lock']} not found (stages run by hand, not by `dvc repro`).")
    for path, entry in dvc["outs"].items() if dvc["found"] else ():
        lines.append(f"- `{path}`: " + (f"md5 `{entry['md5']}` ({entry.get('nfiles')} files, {entry.get('size')} "
                                         f"bytes; stage `{entry['stage']}` in dvc.lock)" if entry
                                         else "not recorded in dvc.lock"))
    commit = code.get("commit")
    lines += ["", "## Lineage", "",
              f"- Git commit: `{commit}`" + (" (work tree had uncommitted changes: "
                                              + ", ".join(code["dirty_paths"][:10]) + ")" if code.get("dirty") else "")
              if commit else f"- Git commit: unknown ({code.get('note')})",
              f"- Reproduce: `git checkout {commit or '<commit>'} && dvc repro` "
              "(params below are params.yaml as used).",
              "", "## Params (params.yaml)", "", "```yaml", yaml.safe_dump(card["params"], sort_keys=False).rstrip(),
              "```",
              "", "## Detector config (models/detector/detector.json)", "", "```json",
              json.dumps(model["detector_config"], indent=2), "```", "",
              "## Limitations", "",
              "- Single class; faces much smaller than the smallest anchor (see the detector config) are missed.",
              "- Trained and scored on the data source above only; numbers on the synthetic data say "
              "nothing about real photos.", ""]
    return "\n".join(lines)


def headline_metrics(card: Mapping[str, Any]) -> dict[str, float | None]:
    """What `dvc metrics show`, `dvc exp show` and `dvc exp diff` compare between runs: the shipped int8
    file's WIDER Easy / Medium / Hard AP and COCO AP on the val split, its size and 1-thread latency
    (None where not measured). The only DVC metrics file, so the table stays a few columns wide."""
    shipped = (card["metrics"].get("tflite") or {}).get("int8") or {}
    facts = card["files"].get("int8") or {}
    return {"easy_ap": shipped.get("wider_easy_ap"), "medium_ap": shipped.get("wider_medium_ap"),
            "hard_ap": shipped.get("wider_hard_ap"), "coco_ap": shipped.get("coco_ap"),
            "size_kb": facts.get("size_kb"), "latency_ms": facts.get("latency_ms_1_thread")}


def write_model_card(card: Mapping[str, Any], md_path: str | os.PathLike, json_path: str | os.PathLike) -> None:
    """Write the card as Markdown and JSON, each atomically."""
    write_text_atomic(json_path, json.dumps(card, indent=2) + "\n")
    write_text_atomic(md_path, render_markdown(card))


def load_inputs(params_path: str | os.PathLike = PARAMS_FILE, model_dir: str | os.PathLike = MODEL_DIR,
                configs_dir: str | os.PathLike = CONFIGS_DIR) -> dict[str, Any]:
    """params.yaml, detector.json and the preset YAML it came from (None if that file is gone)."""
    params = read_params_file(params_path)  # reads floats as DVC writes them ('1e-05')
    detector_config = read_json_if_present(Path(model_dir) / "detector.json")
    if detector_config is None:
        raise FileNotFoundError(f"{model_dir}/detector.json: no trained model (run the train stage)")
    preset = (params.get("model") or {}).get("preset")
    preset_path = Path(configs_dir) / f"{preset}.yaml"
    preset_config = (yaml.safe_load(preset_path.read_text(encoding="utf-8"))
                     if preset and preset_path.is_file() else None)
    return {"params": params, "detector_config": detector_config, "preset_config": preset_config}
