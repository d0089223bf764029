"""The synthetic default dataset: generated face-like scenes written as the four official
WIDERFace zips, so every later stage runs the same code on it as on real WIDERFace, offline.

Each image is a scene (gradient / blotch / stripe / checker backgrounds, noise, distractor shapes,
some skin-toned blobs without eyes, torsos) with 0 to `max_faces` faces. A face is a skin-tone
ellipse (h/w 1.2-1.3) with hair, ears, brows, eyes, nose and mouth; its size is log-uniform from
10 px to half the short image side. Per face, what is drawn sets the attribute columns:

- blur 0/1/2: no / moderate / heavy Gaussian blur of the face;
- expression 1: wide open mouth; illumination 1: face strongly darkened or washed out;
- invalid 1: a faded "ghost" face (about 30 % opacity);
- occlusion 0/1/2: no occluder / a rectangle over 15-35 % / over 45-70 % of the face box;
- pose 1: face rotated 30-60 degrees or turned to profile.

The annotation box is the bounding box of the (rotated) face ellipse, in pixel x1, y1, w, h; it is
kept whole when the face reaches past the image edge. Format quirks of the real files are
reproduced: zero-face images (count 0 plus the dummy line), invalid faces, a few degenerate
annotation rows (w or h 0 or negative, drawn nowhere), some grayscale JPEGs.

Eval subsets of the synthetic val split (written to eval_tools.zip like the official .mat files):
- hard: all valid faces (invalid 0) with w >= 1 and h >= 1;
- medium: hard faces with min(w, h) >= 20 px and occlusion < 2;
- easy: medium faces with min(w, h) >= 40 px, occlusion 0 and blur < 2.

The output is byte-identical for the same params: per-image numpy Generators seeded from
(seed, split, index), deterministic JPEG encoding, zips with fixed dates/permissions and sorted
members (JPEGs stored, text and .mat deflated).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facedet.data.wider_archive import (
    EVAL_GT_DIR_MEMBER,
    EVAL_TOOLS_ZIP,
    GT_TXT_MEMBER,
    IMAGES_ZIP,
    SPLIT_ZIP,
    image_member,
)
from facedet.data.synthetic_face import (
    SKIN_TONES,
    SyntheticFace,
    face_patch,
    jittered_color,
    occlude,
    random_color,
    rotated_box,
)
from facedet.data.wider_gt import WiderRecord, format_gt_txt
from facedet.data.wider_mat import eval_images_of, eval_mat_bytes
from facedet.params.sections import SyntheticParams
from facedet.process.zips import zip_bytes

# (event folder, file-name words) like the real WIDER events
EVENTS = (
    ("0--Parade", ("Parade_marchingband", "Parade_Parade")),
    ("1--Handshaking", ("Handshaking_Handshaking",)),
    ("2--Demonstration", ("Demonstration_Demonstrators", "Demonstration_Protesters")),
    ("4--Dancing", ("Dancing_Dancing",)),
    ("7--Cheering", ("Cheering_Cheering",)),
    ("12--Group", ("Group_Group", "Group_Large_Group")),
)
SPLIT_IDS = {"train": 0, "val": 1}
MIN_FACE_PX = 10
JPEG_QUALITY = 90



def subset_membership(gt_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Easy/medium/hard membership of an image's faces (int (N, 10) gt rows): subset -> 1-based indices."""
    gt_rows = np.asarray(gt_rows).reshape(-1, 10)
    w, h = gt_rows[:, 2], gt_rows[:, 3]
    side = np.minimum(w, h)
    blur, invalid, occlusion = gt_rows[:, 4], gt_rows[:, 7], gt_rows[:, 8]
    hard = (invalid == 0) & (w >= 1) & (h >= 1)
    medium = hard & (side >= 20) & (occlusion < 2)
    easy = medium & (side >= 40) & (occlusion == 0) & (blur < 2)
    return {name: np.flatnonzero(mask) + 1 for name, mask in (("easy", easy), ("medium", medium), ("hard", hard))}


# ---------------------------------------------------------------------------------------------
# drawing


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    kind = rng.integers(0, 4)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = (xx * math.cos(angle) + yy * math.sin(angle))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        arr = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    elif kind == 1:  # smooth blotches
        grid = rng.uniform(0, 255, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)).astype(np.uint8)
        arr = np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC), np.float32)
    elif kind == 2:  # stripes
        period = rng.uniform(6, 40)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, math.pi)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        arr = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    else:  # checker / tiles
        cell = int(rng.integers(8, 48))
        yy, xx = np.mgrid[0:height, 0:width]
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
        arr = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    noise = rng.normal(0, rng.uniform(2, 14), (height, width, 1 if rng.random() < 0.5 else 3))
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _distractors(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    for _ in range(int(rng.integers(2, 12))):
        size = float(np.exp(rng.uniform(math.log(6), math.log(max(min(width, height) * 0.6, 8)))))
        x, y = rng.uniform(-size / 2, width), rng.uniform(-size / 2, height)
        w, h = size * rng.uniform(0.3, 2.5), size * rng.uniform(0.3, 2.5)
        color = random_color(rng)
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.rectangle([x, y, x + w, y + h], fill=color)
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + h], fill=color)
        elif kind == 2:
            pts = [(x + rng.uniform(0, w), y + rng.uniform(0, h)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=color)
        else:
            draw.line([x, y, x + w, y + h], fill=color, width=int(rng.integers(1, 6)))
    if rng.random() < 0.45:  # skin-toned blobs without eyes (hard negatives)
        for _ in range(int(rng.integers(1, 4))):
            size = float(np.exp(rng.uniform(math.log(10), math.log(max(min(width, height) * 0.4, 12)))))
            w, h = size, size * rng.uniform(0.6, 1.6)
            x, y = rng.uniform(0, width - w / 2), rng.uniform(0, height - h / 2)
            skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
            draw.ellipse([x, y, x + w, y + h], fill=jittered_color(rng, skin, 10))


def _place_faces(rng: np.random.Generator, width: int, height: int, max_faces: int) -> list[SyntheticFace]:
    if max_faces <= 0 or rng.random() < 0.06:
        return []
    wanted = 1 + int(max_faces * rng.random() ** 1.6)
    wanted = min(wanted, max_faces)
    big = max(min(width, height) / 2 / 1.25, MIN_FACE_PX + 1)
    faces: list[SyntheticFace] = []
    taken: list[tuple[float, float, float, float]] = []  # face boxes grown by the hair margin
    tries = 0
    while len(faces) < wanted and tries < wanted * 12:
        tries += 1
        # log-uniform sizes, shrinking a little as the image fills
        top = big / (1 + 0.15 * len(faces))
        w = float(np.exp(rng.uniform(math.log(MIN_FACE_PX), math.log(max(top, MIN_FACE_PX + 1)))))
        h = w * rng.uniform(1.2, 1.3)
        past_edge = rng.random() < 0.08
        slack = 0.35 if past_edge else 0.0
        x = rng.uniform(-slack * w, width - (1 - slack) * w)
        y = rng.uniform(-slack * h, height - (1 - slack) * h)
        if not past_edge and (x < 0 or y < 0 or x + w > width or y + h > height):
            continue
        m = 0.3 * w
        grown = (x - m, y - m, x + w + m, y + h + m)
        if any(grown[0] < t[2] and t[0] < grown[2] and grown[1] < t[3] and t[1] < grown[3] for t in taken):
            continue
        taken.append(grown)
        face = SyntheticFace(int(round(x)), int(round(y)), int(round(w)), int(round(h)))
        r = rng.random(8)
        face.blur = 2 if r[0] < 0.06 else 1 if r[0] < 0.2 else 0
        face.expression = int(r[1] < 0.1)
        face.illumination = int(r[2] < 0.07)
        face.invalid = int(r[3] < 0.03)
        face.occlusion = 2 if r[4] < 0.06 else 1 if r[4] < 0.16 else 0
        if r[5] < 0.08:
            face.pose = 1
            if r[6] < 0.5:
                face.angle = float(rng.uniform(30, 60) * rng.choice([-1, 1]))
            else:
                face.profile = float(rng.uniform(0.16, 0.24) * rng.choice([-1, 1]))
        else:
            face.angle = float(rng.uniform(-12, 12))
        faces.append(face)
    return faces


def render_image(rng: np.random.Generator, max_faces: int, min_side: int, max_side: int) -> tuple[bytes, np.ndarray]:
    """Draw one scene; returns (JPEG bytes, int32 (N, 10) gt rows with pixel x1, y1, w, h boxes)."""
    width, height = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
    gray = rng.random() < 0.03
    img = _background(rng, width, height)
    draw = ImageDraw.Draw(img)
    _distractors(rng, draw, width, height)
    faces = _place_faces(rng, width, height, max_faces)
    for face in faces:  # torsos under every face, before any face is drawn
        cloth = random_color(rng)
        tw = face.w * rng.uniform(1.8, 2.6)
        cx = face.x1 + face.w / 2
        draw.rounded_rectangle([cx - tw / 2, face.y1 + face.h * 1.1, cx + tw / 2, face.y1 + face.h * 3.2],
                               radius=face.w * 0.4, fill=cloth)
    for face in faces:
        patch, m = face_patch(rng, face, gray)
        img.paste(patch, (int(round(face.x1 - m)), int(round(face.y1 - m))), patch)
    for face in faces:
        if face.occlusion:
            occlude(rng, draw, face)
    rows = []
    for face in faces:
        face.x1, face.y1, face.w, face.h = rotated_box(face)
        rows.append(face.row())
    # global lighting: brightness/contrast/gamma and a colour cast, then sensor noise
    arr = np.asarray(img, np.float32)
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3)
    contrast = rng.uniform(0.75, 1.15)
    arr = (arr - 128) * contrast + 128
    arr = 255 * np.clip(arr * gain / 255, 0, 1) ** rng.uniform(0.8, 1.25)
    arr += rng.normal(0, rng.uniform(0.5, 4), arr.shape[:2] + (1,))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if gray:
        img = img.convert("L")
    if rng.random() < 0.02:  # an annotation quirk: a degenerate box drawn nowhere
        bad = [int(rng.integers(0, width)), int(rng.integers(0, height)), 0, int(rng.integers(1, 20))]
        if rng.random() < 0.5:
            bad[2], bad[3] = int(rng.integers(1, 20)), -int(rng.integers(1, 5))
        rows.append(bad + [0, 0, 0, 0, 0, 0])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue(), np.asarray(rows, np.int32).reshape(-1, 10)


def image_name(rng: np.random.Generator, split_id: int, index: int) -> str:
    """'event/name.jpg' like WIDER: '0--Parade/0_Parade_marchingband_1_17.jpg'."""
    event, words = EVENTS[int(rng.integers(len(EVENTS)))]
    number = event.split("--")[0]
    word = words[int(rng.integers(len(words)))]
    return f"{event}/{number}_{word}_{int(rng.integers(1, 4))}_{index * 2 + split_id + 10}.jpg"


def generate_split(params: SyntheticParams, split: str) -> list[tuple[WiderRecord, bytes]]:
    """All (record, JPEG bytes) of one split, sorted by image path."""
    n = params.train_images if split == "train" else params.val_images
    lo, hi = sorted((params.min_side, params.max_side))
    out = []
    for index in range(n):
        rng = np.random.default_rng([params.seed, SPLIT_IDS[split], index])
        name = image_name(rng, SPLIT_IDS[split], index)
        data, gt_rows = render_image(rng, params.max_faces, lo, hi)
        out.append((WiderRecord(image=name, gt_rows=gt_rows), data))
    out.sort(key=lambda item: item[0].image)
    return out


def write_synthetic_dataset(params: SyntheticParams, out_dir: str | os.PathLike, progress=None) -> dict[str, int]:
    """Generate the synthetic dataset into `out_dir` as WIDER_train.zip, WIDER_val.zip,
    wider_face_split.zip and eval_tools.zip (official member paths). Returns counts per split.

    progress: optional callable(n) called after each split is drawn (e.g. tqdm.update).
    """
    if params.min_side > params.max_side:
        raise ValueError(f"data.synthetic.min_side ({params.min_side}) > max_side ({params.max_side})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    txt: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    for split in ("train", "val"):
        items = generate_split(params, split)
        if progress:
            progress(len(items))
        records = [rec for rec, _ in items]
        members = {image_member(split, rec.image): data for rec, data in items}
        (out_dir / IMAGES_ZIP[split]).write_bytes(zip_bytes(members, compress=False))
        txt[GT_TXT_MEMBER[split]] = format_gt_txt(records).encode("utf-8")
        counts[f"{split}_images"] = len(records)
        counts[f"{split}_faces"] = int(sum(len(r.gt_rows) for r in records))
        if split == "val":
            mats = eval_mat_bytes(*eval_images_of(records, subset_membership))
            (out_dir / EVAL_TOOLS_ZIP).write_bytes(
                zip_bytes({f"{EVAL_GT_DIR_MEMBER}/{k}": v for k, v in mats.items()}, compress=True))
    (out_dir / SPLIT_ZIP).write_bytes(zip_bytes(txt, compress=True))
    return counts
