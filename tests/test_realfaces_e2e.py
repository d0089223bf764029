"""Real files through the pipeline: about 20 photos of ../shared/realfaces/ (WIDER FACE in its official
layout with its official .mat ground truth, and a real PASCAL VOC export) go through fetch (local + an
extra VOC source) -> filter -> shard -> a few training steps -> evaluate, as a user runs it with
`dvc repro`. Skips when ../shared/realfaces is absent; the photos are copied to a temporary folder only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facedet.data.local_wider import write_local_wider
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import format_gt_txt, parse_gt_txt
from facedet.data.wider_mat import EVAL_MAT_FILES, read_eval_ground_truth, write_eval_mats

REALFACES = Path(__file__).resolve().parents[2] / "shared" / "realfaces"
pytestmark = pytest.mark.skipif(not (REALFACES / "widerface").is_dir() or not (REALFACES / "facemask_voc").is_dir(),
                                reason=f"{REALFACES} (real WIDER FACE and VOC photos) is not beside this checkout")
TRAIN, VAL, VOC = 8, 8, 4  # 20 photos


def fewest_faces(records, n):
    """The n records with the fewest faces (at least one): small, fast, still real."""
    return sorted((r for r in records if len(r.gt_rows)), key=lambda r: (len(r.gt_rows), r.image))[:n]


def wider_slice(dest: Path) -> dict[str, list]:
    """A WIDER tree of TRAIN + VAL real photos with their official gt lines and the official .mat
    ground truth cut to those val photos (its Easy/Medium/Hard lists kept)."""
    source = REALFACES / "widerface"
    picked = {}
    for split, n in (("train", TRAIN), ("val", VAL)):
        gt = source / f"wider_face_split/wider_face_{split}_bbx_gt.txt"
        picked[split] = fewest_faces(parse_gt_txt(gt.read_text(), str(gt)), n)
        for rec in picked[split]:
            target = dest / f"WIDER_{split}/images" / rec.image
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / f"WIDER_{split}/images" / rec.image, target)
        (dest / "wider_face_split").mkdir(exist_ok=True)
        (dest / f"wider_face_split/wider_face_{split}_bbx_gt.txt").write_text(format_gt_txt(picked[split]))
    keys = {rec.key for rec in picked["val"]}
    official = [img for img in read_eval_ground_truth(source / "eval_tools/ground_truth") if img.key in keys]
    by_key = {rec.key: rec for rec in picked["val"]}
    write_eval_mats(official, [by_key[img.key].gt_rows[:, 4:] for img in official], dest / "eval_tools/ground_truth")
    return picked


def voc_slice(dest: Path) -> list[str]:
    source = REALFACES / "facemask_voc"
    xmls = sorted((source / "Annotations").glob("*.xml"), key=lambda p: (p.stat().st_size, p.name))[:VOC]
    (dest / "Annotations").mkdir(parents=True)
    (dest / "JPEGImages").mkdir()
    for xml in xmls:
        shutil.copyfile(xml, dest / "Annotations" / xml.name)
        shutil.copyfile(source / "JPEGImages" / f"{xml.stem}.jpg", dest / "JPEGImages" / f"{xml.stem}.jpg")
    return [x.stem for x in xmls]


def test_the_whole_real_widerface_slice_reads_as_a_local_copy(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    record = write_local_wider(REALFACES / "widerface", raw, progress=False)
    archive = WiderArchive(raw)
    assert record["layout"]["eval_ground_truth"] == "eval_tools/ground_truth"
    assert {name: v["official"] for name, v in record["files"]["eval_ground_truth"].items()} == \
        {name: False for name in EVAL_MAT_FILES.values()}  # cut to 201 images: not the published bytes
    counts = {split: (len(archive.records(split)), sum(len(r.gt_rows) for r in archive.records(split)))
              for split in ("train", "val")}
    assert counts == {"train": (333, 11_633), "val": (201, 6_530)}  # as ../shared/realfaces/README.md says
    assert len(archive.eval_ground_truth()) == 201


@pytest.mark.slow
def test_real_photos_go_through_fetch_filter_shard_train_and_evaluate(tmp_path):
    from pipeline_copy import SMALL, fresh_copy, run, stages_run

    picked = wider_slice(tmp_path / "widerface")
    voc_ids = voc_slice(tmp_path / "facemask_voc")
    repo = fresh_copy(tmp_path / "facedet", {
        **SMALL, ("data", "source"): "local", ("data", "local", "path"): str(tmp_path / "widerface"),
        ("data", "extra_train"): {"facemask": {"format": "voc", "path": str(tmp_path / "facemask_voc")}},
        ("train", "steps"): 4, ("train", "checkpoint_every"): 2, ("train", "batch_size"): 2,
    })
    log = run(["dvc", "repro", "evaluate"], repo)
    assert "Running stage 'extra_train@facemask'" in log
    # real photos: the `auto` knobs took the real-faces recipe (the preset, 768 px evaluation ...)
    assert "recipe: real photos (data.source=local): model.preset=ssd_mobilenet_v2_native_256" in log
    assert stages_run(log) == {"fetch", "filter", "shard", "train", "evaluate"}

    sources = json.loads((repo / "data/raw/sources.json").read_text())
    assert sources["local"]["files"]["WIDER_val/images"]["images"] == VAL
    assert sources["extra_train"]["facemask"]["pixel_origin"] == 1  # the devkit's 1-based corners
    by_source = json.loads((repo / "reports/filter.json").read_text())["train"]["by_source"]
    assert by_source["local"]["images_in"] == TRAIN and by_source["facemask"]["images_in"] == VOC
    assert by_source["local"]["faces_in"] == sum(len(r.gt_rows) for r in picked["train"])
    archive = WiderArchive(repo / "data/raw")
    assert {f"facemask/{i}.jpg" for i in voc_ids} <= {r.image for r in archive.records("train")}
    official = {img.key: img for img in read_eval_ground_truth(REALFACES / "widerface/eval_tools/ground_truth")}
    for img in archive.eval_ground_truth():  # the official ignore lists survived, face for face
        for subset in ("easy", "medium", "hard"):
            np.testing.assert_array_equal(img.keep[subset], official[img.key].keep[subset])

    import tensorflow as tf

    from facedet.data.tfrecord_schema import parse_example

    examples = [parse_example(r) for r in tf.data.TFRecordDataset(sorted(map(str, (repo / "data/tfrecords")
                                                                             .glob("train.record-*"))))]
    assert len(examples) == TRAIN + VOC
    metrics = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    assert metrics["input_size"] == 768
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("wider_easy_ap", "wider_medium_ap", "wider_hard_ap", "coco_ap"))
    assert json.loads((repo / "dvclive/train/metrics.json").read_text())["step"] == 3
