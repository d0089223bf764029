"""TFRecords: a user shards the filtered tables and reads them back with `parse_example`;
every box matches the table, JPEG bytes are untouched, and shards do not depend on workers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from facedet.embedded import EmbeddedParams, write_embedded_dataset
from facedet.filtering import FilterParams, load_filtered, run_filter
from facedet.tfrecords import (
    ExampleEncoder,
    label_map_text,
    make_example,
    parse_example,
    shard_paths,
    write_shards,
)
from facedet.wider import WiderArchive


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
    params = EmbeddedParams(seed=3, train_images=4, val_images=14, min_side=64, max_side=128, max_faces=8)
    write_embedded_dataset(params, root / "raw")
    archive = WiderArchive(root / "raw")
    run_filter(archive, FilterParams(), root / "interim", splits=("val",))
    return root, archive


def test_shards_parse_back_and_every_box_matches_the_filtered_table(filtered, tmp_path):
    root, archive = filtered
    images = load_filtered(root / "interim", "val")
    paths = write_shards(tmp_path / "val.record", images, 2, encode=ExampleEncoder(archive, "val"))
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


def test_shard_bytes_do_not_depend_on_the_worker_count(filtered, tmp_path):
    root, archive = filtered
    images = load_filtered(root / "interim", "val")
    one = write_shards(tmp_path / "one/val.record", images, 3, encode=ExampleEncoder(archive, "val"), workers=1)
    two = write_shards(tmp_path / "two/val.record", images, 3, encode=ExampleEncoder(archive, "val"), workers=2,
                       chunksize=2)
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]


def test_non_rgb_images_are_reencoded_once(filtered):
    import io

    from PIL import Image

    from facedet.tfrecords import jpeg_for_shard

    buf = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(buf, format="JPEG")
    out = jpeg_for_shard(buf.getvalue(), "CMYK", "JPEG")
    assert Image.open(io.BytesIO(out)).mode == "RGB"
    assert jpeg_for_shard(b"same", "L", "JPEG") == b"same"


def test_shard_bytes_are_identical_across_runs(tmp_path):
    """Protobuf maps serialize in arbitrary order unless asked: two fresh processes must agree."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys, numpy as np\nfrom facedet.tfrecords import make_example, write_shards\n"
              "ex = [make_example(b'img%d' % i, 'e/%d.jpg' % i, 10, 10, np.array([[1, 2, 3, 4]])) for i in range(5)]\n"
              "write_shards(sys.argv[1], ex, 1)\n")
    repo = str(Path(__file__).resolve().parents[1])
    for run, seed in (("a", "1"), ("b", "2")):
        env = dict(os.environ, PYTHONPATH=repo, PYTHONHASHSEED=seed, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run / "x.record")], env=env, check=True)
    name = "x.record-00000-of-00001"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
