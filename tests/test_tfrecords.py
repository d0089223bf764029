"""TFRecords: a user shards the filtered tables and reads them back with `parse_example`;
every box matches the table, JPEG bytes are untouched, and shards do not depend on workers."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facedet.data.filtering import load_filtered, run_filter
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.tfrecord_schema import label_map_text, parse_example, shard_paths
from facedet.data.tfrecord_writer import (
    ExampleEncoder,
    ShardCheckError,
    check_shards,
    image_for_shard,
    make_example,
    write_shards,
)
from facedet.data.wider_archive import WiderArchive
from facedet.params.sections import FilterParams, ShardParams, SyntheticParams


def read_all(paths):
    return [parse_example(r) for r in tf.data.TFRecordDataset([str(p) for p in paths])]


def test_example_has_the_tf_od_api_keys_and_normalised_clipped_boxes():
    jpeg = b"\xff\xd8 not decoded here \xff\xd9"
    ex = make_example(jpeg, "0--Parade/a.jpg", 200, 100, np.array([[20, 10, 40, 30], [180, -5, 40, 20]], np.float32))
    feats = ex.features.feature
    assert feats["image/encoded"].bytes_list.value[0] == jpeg
    assert feats["image/format"].bytes_list.value[0] == b"jpeg"
    assert feats["image/source_id"].bytes_list.value[0] == b"0--Parade/a.jpg"
    assert feats["image/key/sha256"].bytes_list.value[0] == hashlib.sha256(jpeg).hexdigest().encode()
    assert list(feats["image/object/class/text"].bytes_list.value) == [b"face", b"face"]
    parsed = parse_example(ex.SerializeToString())
    np.testing.assert_allclose(parsed["boxes"].numpy(), [[0.1, 0.1, 0.4, 0.3], [0.0, 0.9, 0.15, 1.0]], atol=1e-6)
    assert parsed["labels"].numpy().tolist() == [1, 1]
    assert (parsed["image/height"].numpy(), parsed["image/width"].numpy()) == (100, 200)
    empty = parse_example(make_example(jpeg, "x/y.jpg", 10, 10, np.zeros((0, 4))).SerializeToString())
    assert empty["boxes"].shape == (0, 4)


def test_write_shards_splits_17_examples_into_3_named_shards(tmp_path):
    examples = [make_example(b"img%d" % i, f"e/{i}.jpg", 10, 10, np.zeros((0, 4))) for i in range(17)]
    paths = write_shards(tmp_path / "train.record", examples, 3)
    assert [p.name for p in paths] == [f"train.record-0000{i}-of-00003" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp dir left
    got = [read_all([p]) for p in paths]
    assert [len(g) for g in got] == [6, 6, 5]
    assert [r["image/source_id"].numpy() for r in got[1]] == [b"e/%d.jpg" % i for i in range(1, 17, 3)]
    contiguous = write_shards(tmp_path / "c.record", examples, 3, assignment="contiguous")
    assert [r["image/source_id"].numpy() for r in read_all(contiguous)] == [b"e/%d.jpg" % i for i in range(17)]
    assert shard_paths(tmp_path / "v.record", 2)[1].name == "v.record-00001-of-00002"
    assert 'name: "face"' in label_map_text() and "id: 1" in label_map_text()


def test_a_failing_writer_leaves_no_shards(tmp_path):
    def explode(item):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_shards(tmp_path / "x.record", [1, 2, 3], 2, encode=explode)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    params = SyntheticParams(seed=3, train_images=4, val_images=14, min_side=64, max_side=128, max_faces=8)
    write_synthetic_dataset(params, root / "raw")
    archive = WiderArchive(root / "raw")
    run_filter(archive, FilterParams(), root / "interim", splits=("val",))
    return root, archive


def test_shards_parse_back_and_every_box_matches_the_filtered_table(filtered, tmp_path):
    root, archive = filtered
    images = load_filtered(root / "interim", "val")
    paths = write_shards(tmp_path / "val.record", images, 2, encode=ExampleEncoder(archive, "val"))
    assert check_shards(paths, images) == {"examples": len(images), "faces": sum(len(i.boxes_xywh) for i in images)}
    records = {r["image/source_id"].numpy().decode(): r for r in read_all(paths)}
    assert sorted(records) == sorted(img.image for img in images)
    for img in images:
        rec = records[img.image]
        assert rec["image/encoded"].numpy() == archive.read_image("val", img.image)  # passed through
        assert (rec["image/width"].numpy(), rec["image/height"].numpy()) == (img.width, img.height)
        x, y, w, h = img.boxes_xywh.T if len(img.boxes_xywh) else np.zeros((4, 0))
        expected = np.stack([y / img.height, x / img.width, (y + h) / img.height, (x + w) / img.width], axis=-1)
        np.testing.assert_allclose(rec["boxes"].numpy(), expected.reshape(-1, 4), atol=1e-6)
        assert rec["labels"].numpy().tolist() == [1] * len(img.boxes_xywh)


def test_the_shard_check_names_the_shard_and_image_that_differ(filtered, tmp_path):
    root, archive = filtered
    images = load_filtered(root / "interim", "val")
    paths = write_shards(tmp_path / "val.record", images, 2, encode=ExampleEncoder(archive, "val"))
    moved = [replace(img, boxes_xywh=img.boxes_xywh + 1) if k == 3 else img for k, img in enumerate(images)]
    with pytest.raises(ShardCheckError, match=rf"val.record-00001-of-00002#1: {images[3].image}: boxes differ"):
        check_shards(paths, moved)
    with pytest.raises(ShardCheckError, match="1 images of the table are in no shard"):
        check_shards(paths, [*images, replace(images[0], image="9--Extra/x.jpg")])
    with pytest.raises(ShardCheckError, match="not in the filtered table"):
        check_shards(paths, images[1:])


def test_shard_bytes_do_not_depend_on_the_worker_count(filtered, tmp_path):
    root, archive = filtered
    images = load_filtered(root / "interim", "val")
    one = write_shards(tmp_path / "one/val.record", images, 3, encode=ExampleEncoder(archive, "val"), workers=1)
    for workers in (2, 3):
        many = write_shards(tmp_path / f"{workers}/val.record", images, 3, encode=ExampleEncoder(archive, "val"),
                            workers=workers)
        assert [p.read_bytes() for p in one] == [p.read_bytes() for p in many]
    contiguous = [write_shards(tmp_path / f"c{w}/val.record", images, 4, encode=ExampleEncoder(archive, "val"),
                               workers=w, assignment="contiguous") for w in (1, 2)]
    assert [p.read_bytes() for p in contiguous[0]] == [p.read_bytes() for p in contiguous[1]]
    check_shards(contiguous[1], images)


def test_original_bytes_pass_through_unless_reencoding_is_needed_or_asked():
    def encoded(mode, fmt="JPEG", size=(80, 60)):
        buf = io.BytesIO()
        Image.new(mode, size, 100).save(buf, format=fmt)
        return buf.getvalue()

    rgb, gray, cmyk, png = encoded("RGB"), encoded("L"), encoded("CMYK"), encoded("RGB", "PNG")
    assert image_for_shard(rgb, 80, 60, "RGB", "JPEG") == (rgb, 80, 60, "")
    assert image_for_shard(gray, 80, 60, "L", "JPEG").data is gray
    for data, mode, fmt, transform in ((cmyk, "CMYK", "JPEG", "reencode convert CMYK->RGB quality=95"),
                                       (png, "RGB", "PNG", "reencode quality=95"),
                                       (rgb, "RGB", "JPEG", "reencode quality=80")):
        stored = image_for_shard(data, 80, 60, mode, fmt, reencode=fmt == "JPEG" and mode == "RGB", quality=80
                                 if mode == "RGB" and fmt == "JPEG" else 95)
        assert stored.transform == transform
        with Image.open(io.BytesIO(stored.data)) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (80, 60))
    small = image_for_shard(rgb, 80, 60, "RGB", "JPEG", max_side=40)
    assert (small.width, small.height, small.transform) == (40, 30, "reencode downscale max_side=40 quality=95")
    assert image_for_shard(rgb, 80, 60, "RGB", "JPEG", max_side=80).data is rgb  # not larger than max_side


def test_downscaled_examples_say_so_and_keep_their_boxes(filtered, tmp_path):
    root, archive = filtered
    images = load_filtered(root / "interim", "val")
    params = ShardParams(max_image_side=64, jpeg_quality=90)
    paths = write_shards(tmp_path / "val.record", images, 1, encode=ExampleEncoder(archive, "val", params))
    check_shards(paths, images)  # boxes still match the table (normalised), original size recorded
    for record in tf.data.TFRecordDataset([str(p) for p in paths]).as_numpy_iterator():
        feats = tf.train.Example.FromString(record).features.feature
        img = next(i for i in images if i.image.encode() == feats["image/source_id"].bytes_list.value[0])
        width, height = feats["image/width"].int64_list.value[0], feats["image/height"].int64_list.value[0]
        if max(img.width, img.height) > 64:
            assert max(width, height) == 64
            assert feats["image/transform"].bytes_list.value[0] == b"reencode downscale max_side=64 quality=90"
            assert feats["image/original/width"].int64_list.value[0] == img.width
            original = archive.read_image("val", img.image)
            assert feats["image/original/sha256"].bytes_list.value[0] == hashlib.sha256(original).hexdigest().encode()
        else:
            assert "image/transform" not in feats and (width, height) == (img.width, img.height)


def _stage_repo(tmp_path, monkeypatch):
    """A working directory as the shard stage sees it: params.yaml, data/raw, data/interim."""
    write_synthetic_dataset(SyntheticParams(seed=4, train_images=6, val_images=4, min_side=48, max_side=80,
                                          max_faces=3), tmp_path / "data/raw")
    run_filter(WiderArchive(tmp_path / "data/raw"), FilterParams(), tmp_path / "data/interim")
    (tmp_path / "params.yaml").write_text("shard: {train_shards: 2, val_shards: 1, workers: 2}\n")
    monkeypatch.chdir(tmp_path)


def test_the_shard_stage_writes_checked_shards(tmp_path, monkeypatch, capsys):
    from stages import shard

    _stage_repo(tmp_path, monkeypatch)
    shard.main([])
    assert sorted(p.name for p in (tmp_path / "data/tfrecords").iterdir()) == [
        "label_map.pbtxt", "train.record-00000-of-00002", "train.record-00001-of-00002", "val.record-00000-of-00001"]
    assert "read back and checked" in capsys.readouterr().out


def test_the_shard_stage_fails_in_one_line_and_writes_nothing_when_an_image_is_gone(tmp_path, monkeypatch):
    from stages import shard

    _stage_repo(tmp_path, monkeypatch)
    table = tmp_path / "data/interim/val_images.csv"
    lines = table.read_text().splitlines()
    lines[1] = "9--Gone/9_Gone_Gone_1_1.jpg" + lines[1][lines[1].index(","):]
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exit_:
        shard.main([])
    message = str(exit_.value.code)
    assert message.startswith("shard: error: ") and "\n" not in message
    assert "WIDER_val.zip" in message and "9--Gone/9_Gone_Gone_1_1.jpg" in message
    assert not (tmp_path / "data/tfrecords").exists() and [p.name for p in (tmp_path / "data").iterdir()
                                                           if p.name.startswith(".")] == []


def test_shard_bytes_are_identical_across_runs(tmp_path):
    """Protobuf maps serialize in arbitrary order unless asked: two fresh processes must agree."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys, numpy as np\nfrom facedet.data.tfrecord_writer import make_example, write_shards\n"
              "ex = [make_example(b'img%d' % i, 'e/%d.jpg' % i, 10, 10, np.array([[1, 2, 3, 4]])) for i in range(5)]\n"
              "write_shards(sys.argv[1], ex, 1)\n")
    repo = str(Path(__file__).resolve().parents[1])
    for run, seed in (("a", "1"), ("b", "2")):
        env = dict(os.environ, PYTHONPATH=repo, PYTHONHASHSEED=seed, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run / "x.record")], env=env, check=True)
    name = "x.record-00000-of-00001"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
