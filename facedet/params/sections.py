"""params.yaml as types: one frozen dataclass per section and sub-section, in params.yaml's order.

Every knob of the pipeline is a field here and a line in params.yaml, with the same default
(tests/test_params.py keeps the two equal both ways); a knob that reads `auto` there defaults here to
its synthetic-set value (facedet.params.recipes: the loader resolves `auto` before these types see it). `facedet.params.loader` validates a section
against these types (choices, ranges, unknown keys); the library takes its defaults from them.
Pure Python: imports nothing above facedet.params (no TensorFlow), so `--help` and params errors stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from facedet.params.loader import ParamsError, check_ranges, field_range, field_renamed

PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # configs/<name>.yaml, never a path

# ---------------------------------------------------------------------------------------------
# data: the fetch stage

SOURCE_RENAMES = {"embedded": "synthetic"}  # old `data.source` names -> the names they now have
SYNTHETIC_RECORDED_AS = "embedded"  # the synthetic set's name in data/raw's records, from before its rename


@dataclass(frozen=True)
class SyntheticParams:
    """params.yaml `data.synthetic` (source: synthetic): the generated offline dataset in the official WIDER layout."""

    seed: int = 2026
    train_images: int = field_range(1, 200_000, default=480)
    val_images: int = field_range(1, 200_000, default=160)
    min_side: int = field_range(32, 4096, default=160)  # image sides are drawn from [min_side, max_side] px
    max_side: int = field_range(32, 4096, default=400)
    max_faces: int = field_range(0, 500, default=15)


# The files a WIDERFace mirror may serve: the three archives, eval_tools.zip, the four ground-truth .mat files.
MirrorFile = Literal["WIDER_train.zip", "WIDER_val.zip", "wider_face_split.zip", "eval_tools.zip",
                     "wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"]
MIRROR_FILES: tuple[str, ...] = get_args(MirrorFile)


@dataclass(frozen=True)
class Mirror:
    """One entry of `data.widerface.mirrors` (a plain string there is a `base_url`).

    base_url: serves '<base_url>/<file>' for each of `files` (default: the three WIDER archives
    and eval_tools.zip); urls: file -> full URL; google_drive: file -> Google Drive file id.
    File names: one of MIRROR_FILES.
    """

    name: str = ""
    base_url: str = ""
    files: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    google_drive: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"mirror '{self.label}'"
        for key, mapping in (("urls", self.urls), ("google_drive", self.google_drive)):
            if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
                raise ParamsError(f"params.yaml: data.widerface {label}: '{key}' must map file names to strings")
        for name in [*self.files, *self.urls, *self.google_drive]:
            if name not in MIRROR_FILES:
                raise ParamsError(f"params.yaml: data.widerface {label}: unknown file {name!r} "
                                  f"(one of {', '.join(MIRROR_FILES)})")
        if self.files and not self.base_url:
            raise ParamsError(f"params.yaml: data.widerface {label}: 'files' needs a 'base_url'")
        if not (self.base_url or self.urls or self.google_drive):
            raise ParamsError(f"params.yaml: data.widerface {label}: give base_url, urls or google_drive")

    @property
    def label(self) -> str:
        return self.name or self.base_url


@dataclass(frozen=True)
class WiderfaceParams:
    """params.yaml `data.widerface` (source: widerface): where to download WIDERFace, and how hard to try."""

    mirrors: list[Mirror | str] = field(default_factory=list)
    retries: int = field_range(1, 20, default=3)
    timeout_s: float = field_range(1, 3600, default=60)
    backoff_s: float = field_range(0, 600, default=2)

    def mirror_list(self) -> list[Mirror]:
        return [Mirror(base_url=m) if isinstance(m, str) else m for m in self.mirrors]


@dataclass(frozen=True)
class LocalParams:
    """params.yaml `data.local` (source: local): the directory holding the WIDERFace copy."""

    path: str = "data/local"


EXTRA_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # it names an event folder and data/extra/<name>.zip


@dataclass(frozen=True)
class ExtraSource:
    """params.yaml `data.extra_train.<name>`: one extra source of training faces.

    format: voc (path/Annotations/*.xml + path/JPEGImages/), coco (path/<annotations> instances JSON,
    images under path/<images>), wider (path/WIDER_train/images/ + path/wider_face_split/
    wider_face_train_bbx_gt.txt, or their zips). names: the VOC object names / COCO category names that
    are faces (default: all). pixel_origin (voc): auto, 1 (devkit) or 0 (see facedet.data.voc).
    """

    format: Literal["voc", "coco", "wider"]
    path: str
    annotations: str = ""
    images: str = ""
    names: list[str] = field(default_factory=list)
    pixel_origin: Literal["auto", 1, 0] = "auto"

    def check(self, key: str) -> None:
        """ParamsError (one line naming `key`) for keys that do not fit the format."""
        if self.format == "coco" and not self.annotations:
            raise ParamsError(f"params.yaml: '{key}.annotations' is needed for format coco (the instances JSON, "
                              "relative to path)")
        for sub in ("annotations", "images"):
            value = getattr(self, sub)
            if value.startswith("/") or ".." in Path(value).parts:
                raise ParamsError(f"params.yaml: '{key}.{sub}' must lie inside path (DVC watches path), got {value!r}")
        if self.format != "coco" and (self.annotations or self.images):
            raise ParamsError(f"params.yaml: '{key}': annotations and images are for format coco only")
        if self.format != "voc" and self.pixel_origin != "auto":
            raise ParamsError(f"params.yaml: '{key}.pixel_origin' is for format voc only")
        if self.format == "wider" and self.names:
            raise ParamsError(f"params.yaml: '{key}.names' is for voc and coco (every WIDER box is a face)")


def check_extra_sources(sources: dict[str, ExtraSource]) -> None:
    """ParamsError for a source name that cannot be an event/file name, or keys that do not fit."""
    for name, source in sources.items():
        if not EXTRA_SOURCE_NAME.fullmatch(name):
            raise ParamsError(f"params.yaml: 'data.extra_train.{name}': a source name is letters, digits, '_', "
                              "'.' and '-' (it names the event folder and data/extra/<name>.zip)")
        source.check(f"data.extra_train.{name}")


@dataclass(frozen=True)
class DataParams:
    """params.yaml `data` (the fetch stage). `source: embedded` and `data.embedded`, the old names of
    `synthetic` and `data.synthetic`, are refused with one line giving the new names."""

    source: Literal["synthetic", "widerface", "local"] = field_renamed(values=SOURCE_RENAMES, default="synthetic")
    synthetic: SyntheticParams = field_renamed("embedded", default_factory=SyntheticParams)
    widerface: WiderfaceParams = field(default_factory=WiderfaceParams)
    local: LocalParams = field(default_factory=LocalParams)
    extra_train: dict[str, ExtraSource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_extra_sources(self.extra_train)

    @property
    def recorded_source(self) -> str:
        """The main source's name as data/raw records it (sources.json, train_sources.json): the synthetic
        set keeps its old name there, so the same data gives the same bytes (and DVC cache hits)."""
        return SYNTHETIC_RECORDED_AS if self.source == "synthetic" else self.source


# ---------------------------------------------------------------------------------------------
# filter, shard: the data stages


@dataclass(frozen=True)
class FilterParams:
    """params.yaml `filter`: which WIDER faces and images are kept for training and scoring."""

    drop_invalid: bool = True
    min_face_px: float = field_range(0, 10_000, default=6)
    max_blur: int = field_range(0, 2, default=2)
    max_occlusion: int = field_range(0, 2, default=2)
    drop_atypical_pose: bool = False
    clip_to_image: bool = True
    min_image_px: int = field_range(1, 100_000, default=32)
    keep_empty_images: bool = True
    workers: int = field_range(1, 64, default=2)


@dataclass(frozen=True)
class ShardParams:
    """params.yaml `shard`: how the filtered images become TFRecord shards."""

    train_shards: int = field_range(1, 10_000, default=4)
    val_shards: int = field_range(1, 10_000, default=2)
    workers: int = field_range(1, 64, default=2)
    assignment: Literal["round_robin", "contiguous"] = "round_robin"
    reencode: bool = False
    max_image_side: int = field_range(0, 100_000, default=0)
    jpeg_quality: int = field_range(1, 100, default=95)


# ---------------------------------------------------------------------------------------------
# model, train


@dataclass(frozen=True)
class ModelParams:
    """params.yaml `model`: the preset (configs/<preset>.yaml: input size, backbone width, anchors)."""

    preset: str = "ssd_mobilenet_v2_256"

    def __post_init__(self) -> None:
        # a name, not a path: dvc.yaml makes configs/ a dependency of train, so a preset elsewhere would
        # train from a file DVC does not track (and dvc.lock would record a path outside the repository)
        if not PRESET_NAME.fullmatch(self.preset):
            raise ParamsError(f"params.yaml: 'model.preset' must name a preset in configs/ (configs/<name>.yaml: "
                              f"letters, digits, '_', '-', '.'), got {self.preset!r}: to train from another file, "
                              "copy it into configs/")


@dataclass(frozen=True)
class LossParams:
    """params.yaml `train.loss`. classification: 'hard_negative_mining' (top negatives by loss,
    `negatives_per_positive` per positive, at least `min_negatives` per image), 'focal' (all anchors,
    alpha/gamma) or 'qfl' (quality focal loss: a positive's target is the IoU of its predicted box with
    its face, `qfl_beta`). box_iou: an IoU-family loss on the decoded boxes of positives ('giou', 'diou',
    'eiou'), weighted `box_iou_weight`, added to smooth L1 (`localization_weight`; 0: instead of it)."""

    classification: Literal["hard_negative_mining", "focal", "qfl"] = "hard_negative_mining"
    negatives_per_positive: float = 3.0
    min_negatives: int = 8
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    qfl_beta: float = field_range(0.0, 10.0, default=2.0)  # qfl: |target - p| ** beta weighs each anchor
    localization_weight: float = 1.0
    box_iou: Literal["none", "giou", "diou", "eiou"] = "none"
    box_iou_weight: float = field_range(0.0, 100.0, default=2.0)


@dataclass(frozen=True)
class AugmentParams:
    """params.yaml `train.augment`: training augmentation knobs (probabilities in [0, 1])."""

    flip: float = field_range(0.0, 1.0, default=0.5)
    crop: float = field_range(0.0, 1.0, default=0.5)
    crop_min_covered: float = field_range(0.0, 1.0, default=0.5)  # fraction of some face inside the window
    crop_min_area: float = field_range(0.05, 1.0, default=0.3)  # of the image, for the crop_min_covered rule
    crop_min_iou: float = field_range(0.0, 1.0, default=0.0)  # > 0: the SSD paper's IoU rule instead
    zoom_out: float = field_range(0.0, 1.0, default=0.2)
    zoom_out_max: float = field_range(1.0, 4.0, default=1.6)
    brightness: float = field_range(0.0, 1.0, default=0.125)
    contrast: float = field_range(0.0, 1.0, default=0.3)
    saturation: float = field_range(0.0, 1.0, default=0.3)
    scale_crop: float = field_range(0.0, 1.0, default=0.0)  # native-scale square crop (facedet.train.scale_crop)
    scale_crop_min: float = field_range(0.1, 8.0, default=0.5)  # zoom z: crop side = z x input px
    scale_crop_max: float = field_range(0.1, 8.0, default=1.6)
    # what z multiplies: 'input' (the model input side) or 'short_side' (the photo's, SCRFD's [0.3, 2.0])
    scale_crop_of: Literal["input", "short_side"] = "input"

    def __post_init__(self) -> None:
        if self.scale_crop_min > self.scale_crop_max:
            raise ParamsError(f"params.yaml: 'train.augment.scale_crop_min' ({self.scale_crop_min}) must be <= "
                              f"'train.augment.scale_crop_max' ({self.scale_crop_max})")


@dataclass(frozen=True)
class TrainParams:
    """params.yaml `train`: the recipe (schedule, optimizer, anchor matching, loss, augmentation) and how it runs."""

    steps: int = field_range(1, 10_000_000)
    batch_size: int = field_range(1, 4096)
    learning_rate: float = field_range(0.0, 10.0)
    warmup_steps: int = field_range(0, 10_000_000)
    weight_decay: float = field_range(0.0, 1.0)
    seed: int = 7
    backbone_weights: str = "none"  # none | imagenet | <path to a Keras HDF5 weights file of the backbone>
    backbone_batch_norm: Literal["train", "frozen"] = "train"  # frozen: backbone batch norm keeps its (ImageNet) statistics
    frozen_backbone_blocks: int = field_range(0, 18, default=0)  # the backbone's stem and blocks below this stay as loaded
    download_timeout_s: float = field_range(1, 3600, default=60)  # imagenet: give up when nothing comes for this long
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    checkpoint_every: int = field_range(1, 10_000_000, default=250)
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    final_learning_rate: float = field_range(0.0, 1.0, default=0.0)  # as a fraction of learning_rate
    positive_iou: float = field_range(0.0, 1.0, default=0.5)
    negative_iou: float = field_range(0.0, 1.0, default=0.4)
    # iou: the two thresholds above; atss: per face the atss_top_k anchors nearest its centre on each
    # level, positive where IoU >= their mean + std and the anchor's centre lies in the face
    assignment: Literal["iou", "atss"] = "iou"
    atss_top_k: int = field_range(1, 100, default=9)
    log_every: int = field_range(1, 1_000_000, default=10)
    deterministic: bool = False  # bit-identical reruns on the same machine (facedet.train.determinism; slower)
    fused_batch_norm: bool = True  # train batch norm with TF's fused kernel (facedet.train.fused_batch_norm)
    loss: LossParams = LossParams()
    augment: AugmentParams = AugmentParams()

    def __post_init__(self) -> None:
        if self.negative_iou > self.positive_iou:
            raise ParamsError(f"params.yaml: 'train.negative_iou' ({self.negative_iou}) must be <= "
                              f"'train.positive_iou' ({self.positive_iou})")


# ---------------------------------------------------------------------------------------------
# evaluate, export


@dataclass(frozen=True)
class EvaluateParams:
    """params.yaml `evaluate`: what detections are kept for scoring, and how many images to draw."""

    score_threshold: float = field_range(0.0, 0.99, default=0.02)
    nms_iou: float = field_range(0.01, 1.0, default=0.4)
    max_detections: int = field_range(1, 10000, default=750)
    images_to_draw: int = field_range(1, 64, default=6)  # detections.png is a declared plot
    # Square input the Keras model runs at, px (multiple of 32); 0: the trained input size. The
    # detector is fully convolutional: a larger input than the phone model's sees small faces at
    # the photo's own scale (e.g. 1024 for WIDER's 1024-px-wide photos, letterboxed).
    input_size: int = field_range(0, 4096, default=0)

    def __post_init__(self) -> None:
        if self.input_size % 32:
            raise ParamsError(f"params.yaml: 'evaluate.input_size' must be 0 or a multiple of 32, "
                              f"got {self.input_size}")


@dataclass(frozen=True)
class ExportParams:
    """params.yaml `export`: calibration size and the post-process op's settings."""

    representative_images: int = field_range(1, 10000, default=100)
    max_detections: int = field_range(1, 10000, default=100)
    score_threshold: float = field_range(0.0, 0.99, default=0.02)
    nms_iou: float = field_range(0.01, 1.0, default=0.4)
    use_regular_nms: bool = False
    input_sizes: tuple[int, ...] = ()  # square input sizes (px, multiples of 32) besides the trained one

    def __post_init__(self) -> None:
        check_ranges(self, "export")  # also when made in code: the post-process op gets these values as they are
        bad = [size for size in self.input_sizes if size < 32 or size % 32]
        if bad:
            raise ParamsError(f"params.yaml: 'export.input_sizes' must be multiples of 32 (>= 32), got {bad}")


# params.yaml's sections, in its order, and the type each is read as (by the stages listed in dvc.yaml)
SECTIONS: dict[str, type] = {"data": DataParams, "filter": FilterParams, "shard": ShardParams, "model": ModelParams,
                             "train": TrainParams, "evaluate": EvaluateParams, "export": ExportParams}
