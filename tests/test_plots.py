"""Report artefacts: PR CSVs dvc can plot, PNGs that open, boxes drawn where they belong."""

import csv

import numpy as np
from PIL import Image

from facedet.evaluate.plots import (
    downsample_curve,
    draw_boxes,
    draw_detection_grid,
    plot_pr_curves,
    plot_recall_by_size,
    write_pr_csvs,
    write_recall_by_size_csv,
)
from facedet.evaluate.wider_eval import SizeBinRecall


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


def test_figures_are_png_files(tmp_path):
    plot_pr_curves(tmp_path / "pr.png", {"easy": curve()}, ap={"easy": 0.9})
    bins = [SizeBinRecall(0, 10, 4, 1), SizeBinRecall(10, np.inf, 0, 0)]
    plot_recall_by_size(tmp_path / "size.png", bins)
    write_recall_by_size_csv(tmp_path / "size.csv", bins)
    for name in ("pr.png", "size.png"):
        assert Image.open(tmp_path / name).format == "PNG"
    assert (tmp_path / "size.csv").read_text().splitlines() == [
        "face_height_px,faces,recalled,recall", "0-10,4,1,0.250000", "10+,0,0,"]


def test_boxes_are_drawn_on_the_image_and_low_scores_skipped():
    image = np.zeros((100, 200, 3), np.uint8)
    drawn = np.asarray(draw_boxes(image, [[10, 10, 30, 30]], [[100, 50, 40, 20, 0.9], [150, 5, 20, 20, 0.1]]))
    assert tuple(drawn[10, 20]) == (0, 255, 255)                    # ground truth edge, cyan
    assert drawn[50, 120, 1] > 200 and drawn[50, 120, 0] < 100      # high score: green
    assert not drawn[5:26, 150:171].any()                           # score 0.1 < 0.3: not drawn


def test_grid_tiles_every_image(tmp_path):
    samples = [(np.full((60, 80, 3), 90, np.uint8), np.zeros((0, 4)), np.zeros((0, 5))) for _ in range(4)]
    draw_detection_grid(tmp_path / "grid.png", samples, columns=3, cell=100)
    assert Image.open(tmp_path / "grid.png").size == (300, 200)
