"""A WIDERFace-sized gt txt, generated (never downloaded): 12,880 images and 159,424 faces like the
official wider_face_train_bbx_gt.txt, with its quirks (zero-face images with the dummy line, trailing
spaces, optional CRLF). Used by tests/test_wider_gt.py (counts) and bench/data_speed.py (time).
Also a three-image gt txt with the same quirks, and three val images as the eval ground truth has them."""

from __future__ import annotations

import numpy as np

from facedet.data.wider_mat import EvalImage

TRAIN_IMAGES, TRAIN_FACES, ZERO_FACE_IMAGES = 12_880, 159_424, 4


def full_size_gt_txt(seed: int = 0, crlf: bool = False) -> tuple[str, np.ndarray]:
    """(gt txt text, int (images,) face count per image in file order)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(TRAIN_IMAGES, np.int64)
    with_faces = np.setdiff1d(np.arange(TRAIN_IMAGES), np.linspace(10, TRAIN_IMAGES - 10, ZERO_FACE_IMAGES, dtype=int))
    share = np.full(len(with_faces), 1 / len(with_faces))
    counts[with_faces] = 1 + rng.multinomial(TRAIN_FACES - len(with_faces), share)
    faces = np.column_stack([rng.integers(0, 1000, (TRAIN_FACES, 2)), rng.integers(-1, 300, (TRAIN_FACES, 2)),
                             rng.integers(0, 3, TRAIN_FACES), rng.integers(0, 2, (TRAIN_FACES, 3)),
                             rng.integers(0, 3, TRAIN_FACES), rng.integers(0, 2, TRAIN_FACES)])
    rows = [" ".join(map(str, row)) + " " for row in faces.tolist()]
    lines: list[str] = []
    k = 0
    for i, n in enumerate(counts.tolist()):
        lines.append(f"{i % 61}--Event/{i % 61}_Event_Event_{i % 7}_{i}.jpg")
        lines.append(str(n))
        if n == 0:
            lines.append("0 0 0 0 0 0 0 0 0 0 ")
        lines.extend(rows[k:k + n])
        k += n
    newline = "\r\n" if crlf else "\n"
    return newline.join(lines) + newline, counts


# Three images: one face; no face (the dummy line); three faces, one with a negative x and height.
SMALL_GT_TXT = """0--Parade/0_Parade_marchingband_1_849.jpg
1
449 330 122 149 0 0 0 0 0 0 
0--Parade/0_Parade_Parade_0_904.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Handshaking/1_Handshaking_Handshaking_1_35.jpg
3
10 20 30 40 2 1 0 0 1 0 
5 6 0 8 0 0 0 1 0 0 
-3 7 12 -2 1 0 1 0 2 1 
"""


def small_eval_set() -> tuple[list[EvalImage], list[np.ndarray]]:
    """Three val images in two events (one with no faces) and their attribute rows."""
    images = [
        EvalImage("0--Parade", "0_Parade_a_1_1", np.array([[1, 2, 30, 40], [5, 6, 7, 8]], float),
                  {"easy": np.array([1]), "medium": np.array([1]), "hard": np.array([1, 2])}),
        EvalImage("0--Parade", "0_Parade_a_1_2", np.zeros((0, 4)), {}),
        EvalImage("1--Handshaking", "1_Handshaking_b_1_3", np.array([[9, 9, 50, 60]], float),
                  {"easy": np.array([], int), "medium": np.array([1]), "hard": np.array([1])}),
    ]
    attrs = [np.array([[0, 0, 0, 0, 0, 0], [2, 1, 1, 0, 2, 1]]), np.zeros((0, 6)), np.array([[1, 0, 0, 0, 1, 0]])]
    return images, attrs
