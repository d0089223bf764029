"""One synthetic face, drawn: its attributes (`SyntheticFace`: the WIDER gt row it becomes), the RGBA
patch of the face with its hair, eyes, nose and mouth, shading, lighting, ghosting and blur as the
attributes say (`face_patch`), the bounding box of the rotated face, and the occluder over it.

Every draw comes from the scene's numpy Generator in a fixed order, so the same seed gives the same
bytes (facedet.data.synthetic writes the scenes and the archives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SKIN_TONES = np.array([
    (255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 98), (175, 118, 82),
    (141, 85, 56), (110, 66, 42), (84, 50, 33), (233, 190, 150), (205, 150, 110),
], np.float64)
HAIR_COLORS = np.array([
    (20, 16, 14), (45, 30, 20), (80, 50, 30), (120, 80, 45), (190, 150, 90), (150, 150, 150),
    (140, 60, 30), (35, 35, 40),
], np.float64)


def random_color(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def jittered_color(rng: np.random.Generator, base: np.ndarray, amount: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(base + rng.normal(0, amount, 3), 0, 255))


@dataclass
class SyntheticFace:
    """A face of a scene: its box (pixel x1, y1, w, h: of the unrotated face, then of the rotated one), its
    WIDER attributes, and how it is drawn (`angle` degrees, `profile`: the face turned, a fraction of its width)."""


    x1: int
    y1: int
    w: int
    h: int
    blur: int = 0
    expression: int = 0
    illumination: int = 0
    invalid: int = 0
    occlusion: int = 0
    pose: int = 0
    angle: float = 0.0
    profile: float = 0.0

    def row(self) -> list[int]:
        return [self.x1, self.y1, self.w, self.h, self.blur, self.expression, self.illumination,
                self.invalid, self.occlusion, self.pose]


def face_patch(rng: np.random.Generator, face: SyntheticFace, gray_scene: bool) -> tuple[Image.Image, float]:
    """An RGBA patch of the face (hair margin around the face box) and its margin in px.

    The face ellipse fills the box [margin, margin + w] x [margin, margin + h] of the unrotated patch,
    drawn `ss` times larger and then resized down (antialiasing).
    """
    w, h = face.w, face.h
    ss = 5 if w < 30 else 3 if w < 90 else 2
    m = 0.45 * w
    pw, ph = int(math.ceil((w + 2 * m) * ss)), int(math.ceil((h + 2 * m) * ss))
    skin = np.clip(SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 8, 3), 0, 255)
    hair = np.clip(HAIR_COLORS[rng.integers(len(HAIR_COLORS))] + rng.normal(0, 6, 3), 0, 255)
    patch = Image.new("RGBA", (pw, ph), tuple(int(v) for v in skin) + (0,))
    draw = ImageDraw.Draw(patch)
    box = _face_box(m * ss, m * ss, w * ss, h * ss)
    style = _draw_head(rng, draw, box, face, skin, hair, width_px=w * ss)
    _draw_eyes(rng, draw, box, face, hair, width_px=w * ss)
    _draw_nose_and_mouth(rng, draw, box, face, skin, hair, style)
    out_w, out_h = max(1, round(pw / ss)), max(1, round(ph / ss))
    patch = patch.resize((out_w, out_h), Image.LANCZOS)
    if face.angle:
        patch = patch.rotate(face.angle, resample=Image.BICUBIC, expand=False)
    return _lit(rng, patch, face, gray_scene), m


Box = Callable[[float, float, float, float], list]


def _face_box(ox: float, oy: float, width: float, height: float) -> Box:
    """Face-relative fractions (x0, y0, x1, y1) of the face box at (ox, oy), `width` x `height` px -> patch px."""
    return lambda x0, y0, x1, y1: [ox + x0 * width, oy + y0 * height, ox + x1 * width, oy + y1 * height]


def _draw_head(rng: np.random.Generator, d: ImageDraw.ImageDraw, box: Box, face: SyntheticFace, skin: np.ndarray,
               hair: np.ndarray, width_px: float) -> int:
    """Long hair behind, ears, neck, the face ellipse, the hair on top (`width_px`: the face box's width in
    patch px); returns the hair style (0 short cap, 1 long hair, 2 bald/very short, 3 cap + fringe)."""
    skin_c, hair_c = tuple(int(v) for v in skin), tuple(int(v) for v in hair)
    dark_skin = tuple(int(v) for v in skin * 0.78)
    style = rng.integers(0, 4)
    if style == 1:
        d.rounded_rectangle(box(-0.14, -0.1, 1.14, 1.05), radius=width_px * 0.4, fill=hair_c + (255,))
    px = face.profile
    # ears
    d.ellipse(box(-0.07 + px * 1.5, 0.38, 0.1 + px * 1.5, 0.62), fill=dark_skin + (255,))
    d.ellipse(box(0.9 + px * 1.5, 0.38, 1.07 + px * 1.5, 0.62), fill=dark_skin + (255,))
    # neck
    d.rectangle(box(0.3, 0.8, 0.7, 1.25), fill=dark_skin + (255,))
    # face
    d.ellipse(box(0, 0, 1, 1), fill=skin_c + (255,))
    if style != 2:
        top = rng.uniform(-0.16, -0.06)
        line = rng.uniform(0.22, 0.34)
        d.chord(box(-0.06, top, 1.06, 2 * line - top), 180, 360, fill=hair_c + (255,))
        if style == 3:
            d.chord(box(0.1 + px, line - 0.1, 0.75 + px, line + 0.08), 0, 180, fill=hair_c + (255,))
    return style


def _draw_eyes(rng: np.random.Generator, d: ImageDraw.ImageDraw, box: Box, face: SyntheticFace, hair: np.ndarray,
               width_px: float) -> None:
    """Brows, eyes (white, iris, pupil; a profile face's far eye foreshortened, its near one hidden), glasses."""
    px = face.profile
    cx = 0.5 + px
    eye_y = rng.uniform(0.43, 0.48)
    eye_dx = rng.uniform(0.17, 0.21)
    eye_w, eye_h = rng.uniform(0.15, 0.2), rng.uniform(0.07, 0.09)
    iris = tuple(int(v) for v in rng.choice([(40, 25, 15), (60, 90, 130), (70, 110, 60), (30, 30, 30)]))
    brow_c = tuple(int(v) for v in hair * 0.8)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        if px and side == -np.sign(px):
            ex = cx + side * eye_dx * 0.55  # far eye of a profile face, foreshortened
        if px and side == np.sign(px) and abs(px) > 0.2:
            continue
        d.rectangle(box(ex - eye_w / 2 - 0.01, eye_y - 0.1, ex + eye_w / 2 + 0.01, eye_y - 0.07), fill=brow_c + (255,))
        d.ellipse(box(ex - eye_w / 2, eye_y - eye_h / 2, ex + eye_w / 2, eye_y + eye_h / 2), fill=(245, 245, 240, 255))
        r = eye_h * 0.55
        d.ellipse(box(ex - r * 0.85, eye_y - r, ex + r * 0.85, eye_y + r), fill=iris + (255,))
        d.ellipse(box(ex - r * 0.35, eye_y - r * 0.4, ex + r * 0.35, eye_y + r * 0.4), fill=(5, 5, 5, 255))
    if rng.random() < 0.1:  # glasses
        for side in (-1, 1):
            ex = cx + side * eye_dx
            d.ellipse(box(ex - 0.12, eye_y - 0.08, ex + 0.12, eye_y + 0.08), outline=(20, 20, 20, 255),
                      width=max(1, int(0.02 * width_px)))


def _draw_nose_and_mouth(rng: np.random.Generator, d: ImageDraw.ImageDraw, box: Box, face: SyntheticFace,
                         skin: np.ndarray, hair: np.ndarray, style: int) -> None:
    """The nose, the mouth (wide open for `expression`), sometimes a beard (not with long hair)."""
    px = face.profile
    cx = 0.5 + px
    hair_c = tuple(int(v) for v in hair)
    nose_c = tuple(int(v) for v in skin * 0.7) + (255,)
    d.polygon([tuple(box(cx + px * 0.6, 0.5, 0, 0)[:2]), tuple(box(cx - 0.06 + px, 0.65, 0, 0)[:2]),
               tuple(box(cx + 0.06 + px, 0.65, 0, 0)[:2])], fill=nose_c)
    lips = (int(150 + rng.integers(0, 60)), int(50 + rng.integers(0, 30)), int(50 + rng.integers(0, 30)), 255)
    mw = rng.uniform(0.15, 0.2)
    if face.expression:
        d.ellipse(box(cx - mw, 0.7, cx + mw, 0.88), fill=lips)
        d.ellipse(box(cx - mw * 0.7, 0.73, cx + mw * 0.7, 0.85), fill=(50, 10, 15, 255))
    else:
        d.chord(box(cx - mw, 0.7, cx + mw, 0.82), 0, 180, fill=lips)
    if rng.random() < 0.08 and style != 1:  # beard
        d.chord(box(0.05, 0.5, 0.95, 1.04), 20, 160, fill=hair_c + (255,))
        d.chord(box(cx - mw, 0.71, cx + mw, 0.81), 0, 180, fill=lips)


def _lit(rng: np.random.Generator, patch: Image.Image, face: SyntheticFace, gray_scene: bool) -> Image.Image:
    """Soft shading (darker towards the rim, a light side), then the attributes' lighting (`illumination`),
    ghosting (`invalid`), grey (a grayscale scene) and blur."""
    w, h = face.w, face.h
    out_w, out_h = patch.size
    arr = np.asarray(patch, np.float32).copy()
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    ux, uy = (xx - out_w / 2) / max(w / 2, 1), (yy - out_h / 2) / max(h / 2, 1)
    light = rng.uniform(-0.12, 0.12)
    shade = np.clip(1.05 - 0.22 * (ux ** 2 + uy ** 2) + light * ux, 0.55, 1.15)
    arr[..., :3] *= shade[..., None]
    if face.illumination:
        if rng.random() < 0.5:
            arr[..., :3] *= rng.uniform(0.3, 0.45)
        else:
            arr[..., :3] = arr[..., :3] * 0.45 + 255 * 0.55
    if face.invalid:
        arr[..., 3] *= rng.uniform(0.25, 0.35)
    if gray_scene:
        arr[..., :3] = arr[..., :3].mean(axis=-1, keepdims=True)
    patch = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")
    if face.blur:
        radius = (0.035 * w + 0.4) if face.blur == 1 else (0.08 * w + 0.9)
        patch = patch.filter(ImageFilter.GaussianBlur(radius))
    return patch


def rotated_box(face: SyntheticFace) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1, w, h) of the face ellipse after rotating it about its centre."""
    if not face.angle:
        return face.x1, face.y1, face.w, face.h
    t = math.radians(face.angle)
    a, b = face.w / 2, face.h / 2
    hw = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    hh = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    cx, cy = face.x1 + face.w / 2, face.y1 + face.h / 2
    x1, y1 = int(round(cx - hw)), int(round(cy - hh))
    return x1, y1, int(round(cx + hw)) - x1, int(round(cy + hh)) - y1


def occlude(rng: np.random.Generator, draw: ImageDraw.ImageDraw, face: SyntheticFace) -> None:
    frac = rng.uniform(0.15, 0.35) if face.occlusion == 1 else rng.uniform(0.45, 0.7)
    x, y, w, h = face.x1, face.y1, face.w, face.h
    side = rng.integers(0, 4)
    if side == 0:
        rect = [x - 1, y + h * (1 - frac), x + w + 1, y + h + 1]
    elif side == 1:
        rect = [x - 1, y - 1, x + w * frac, y + h + 1]
    elif side == 2:
        rect = [x + w * (1 - frac), y - 1, x + w + 1, y + h + 1]
    else:
        rect = [x - 1, y - 1, x + w + 1, y + h * frac]
    color = random_color(rng, 0, 200)
    draw.rectangle(rect, fill=color)
    if rng.random() < 0.5:  # a striped object
        stripe = random_color(rng)
        step = max(2.0, min(w, h) * 0.15)
        yy = rect[1]
        while yy < rect[3]:
            draw.rectangle([rect[0], yy, rect[2], min(yy + step / 2, rect[3])], fill=stripe)
            yy += step
