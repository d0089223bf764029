"""Report artefacts: PR CSVs dvc can plot, PNGs that open, boxes drawn where they belong."""

import csv

import numpy as np
from PIL import Image

from facedet.evaluate.plots import (
    downsample_curve,
    draw_detection_grid,
    plot_pr_curves,
    plot_recall_by_size,
    write_pr_csvs,
    write_recall_by_size_csv,
)
from facedet.evaluate.wider_eval import SizeBinRecall
from facedet.runtime.drawing import GT_COLOUR, draw_boxes, score_colour

MATPLOTLIB_BLUE = (31, 119, 180)  # 'tab:blue': the first PR line, and the recall bars


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def share_of(image: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float(np.all(image == colour, axis=-1).mean())


def curve():
    recall = np.linspace(0, 0.9, 1000)
    precision = np.linspace(1, 0.4, 1000)
    precision[:5] = np.nan  # no proposal yet at the highest thresholds
    return precision, recall


def test_pr_csvs_one_per_subset_downsampled_and_deterministic(tmp_path):
    curves = {"easy": curve(), "hard": curve()}
    paths = write_pr_csvs(tmp_path / "pr", curves, points=100)
    assert [p.name for p in paths] == ["easy.csv", "hard.csv"]
    rows = list(csv.DictReader(open(paths[0])))
    assert len(rows) == 100 and list(rows[0]) == ["recall", "precision"]
    assert float(rows[-1]["recall"]) == 0.9  # the last point is kept
    first = paths[0].read_bytes()
    write_pr_csvs(tmp_path / "pr", curves, points=100)
    assert paths[0].read_bytes() == first
    assert len(downsample_curve(*curve(), points=5000)) == 995  # NaN rows dropped


def test_figures_are_pngs_that_show_the_curve_and_the_bars(tmp_path):
    plot_pr_curves(tmp_path / "pr.png", {"easy": curve()}, ap={"easy": 0.9})
    bins = [SizeBinRecall(0, 10, 4, 1), SizeBinRecall(10, 20, 4, 4), SizeBinRecall(20, np.inf, 0, 0)]
    plot_recall_by_size(tmp_path / "size.png", bins)
    write_recall_by_size_csv(tmp_path / "size.csv", bins)
    pr, size = pixels(tmp_path / "pr.png"), pixels(tmp_path / "size.png")
    assert pr.shape == (500, 600, 3) and size.shape == (400, 700, 3)  # 6 x 5 and 7 x 4 inches at 100 dpi
    # The PR line is drawn: a thin blue curve (not a blank or a filled figure)
    assert 0.001 < share_of(pr, MATPLOTLIB_BLUE) < 0.05
    line_rows, line_cols = np.nonzero(np.all(pr == MATPLOTLIB_BLUE, axis=-1))
    assert line_cols.max() - line_cols.min() > 300  # spans most of the recall axis (0 .. 0.9)
    assert line_rows.max() - line_rows.min() > 150  # precision falls from 1 to 0.4
    # Bars: recall 1.0 is four times as tall as recall 0.25, and the empty bin has none
    columns = np.nonzero(np.all(size == MATPLOTLIB_BLUE, axis=-1).any(axis=0))[0]
    runs = np.split(columns, np.nonzero(np.diff(columns) > 1)[0] + 1)
    heights = [int(np.all(size[:, run[len(run) // 2]] == MATPLOTLIB_BLUE, axis=-1).sum()) for run in runs]
    assert len(heights) == 2 and abs(heights[1] / heights[0] - 4) < 0.1, heights
    assert (tmp_path / "size.csv").read_text().splitlines() == [
        "min_height_px,face_height_px,faces,recalled,recall", "0,0-10,4,1,0.250000", "10,10-20,4,4,1.000000",
        "20,20+,0,0,"]


def test_boxes_are_drawn_on_the_image_and_low_scores_skipped():
    image = np.zeros((100, 200, 3), np.uint8)
    drawn = np.asarray(draw_boxes(image, [[10, 10, 30, 30]], [[100, 50, 40, 20, 0.9], [150, 5, 20, 20, 0.1]]))
    assert tuple(drawn[10, 20]) == (0, 255, 255)                    # ground truth edge, cyan
    assert drawn[50, 120, 1] > 200 and drawn[50, 120, 0] < 100      # high score: green
    assert not drawn[5:26, 150:171].any()                           # score 0.1 < 0.3: not drawn


def test_grid_tiles_every_image_with_its_boxes_where_they_belong(tmp_path):
    """80 x 60 photos in 100 px cells: scale 1.25, each tile 100 x 75, centred (12 px down)."""
    gt = np.array([[8, 8, 16, 16]])                                   # -> tile px 10..30
    preds = np.array([[40, 20, 20, 20, 0.95], [4, 36, 16, 16, 0.1]])  # -> tile px x 50..75, y 25..50; one too low
    samples = [(np.full((60, 80, 3), 90, np.uint8), gt, preds) for _ in range(4)]
    draw_detection_grid(tmp_path / "grid.png", samples, columns=3, cell=100)
    grid = pixels(tmp_path / "grid.png")
    assert grid.shape == (200, 300, 3)
    good = score_colour(0.95)
    for n in range(4):
        top, left = 100 * (n // 3) + 12, 100 * (n % 3)
        tile = grid[top:top + 75, left:left + 100]
        assert tuple(tile[10, 20]) == GT_COLOUR and tuple(tile[20, 10]) == GT_COLOUR  # ground-truth edges
        assert tuple(tile[25, 60]) == good and tuple(tile[40, 50]) == good            # detection edges
        assert tuple(tile[37, 62]) == (90, 90, 90)                                   # inside: the photo
        rows, cols = np.nonzero(np.all(tile == good, axis=-1))
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (25, 50, 50, 75)  # only that box
        assert not np.all(tile[45:66, 5:26] == score_colour(0.1), axis=-1).any()     # score 0.1: not drawn
    assert np.all(grid[:12] == (32, 32, 32)) and np.all(grid[100:, 100:] == (32, 32, 32))  # margins, empty cells
