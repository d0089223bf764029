"""Extra training sources: a user adds their own faces as PASCAL VOC, COCO or a WIDER-layout tree with
params alone; they join the train split as events of their own, the filter counts faces by source, and
every kind of bad input stops with one line naming the file and the line, XML element or JSON index."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from facedet.data.annotations import AnnotationError
from facedet.data.extra_train import add_extra_train, write_extra_index
from facedet.data.filtering import run_filter
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import WiderFormatError
from facedet.params.loader import ParamsError, build
from facedet.params.sections import DataParams, ExtraSource, FilterParams, SyntheticParams

REPO = Path(__file__).resolve().parents[1]


def jpeg(width: int, height: int, shade: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120 + shade, 90, 60)).save(buf, format="JPEG")
    return buf.getvalue()


def voc_xml(filename: str, size: tuple[int, int] | None, objects: list[tuple]) -> str:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult])."""
    parts = [f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename>"]
    if size:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, x1, y1, x2, y2, *difficult in objects:
        parts.append(f"<object><name>{name}</name><difficult>{difficult[0] if difficult else 0}</difficult>"
                     f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return "\n".join(parts) + "\n</annotation>\n"


def make_voc(root: Path, annotations: dict[str, str] | None = None, images: dict[str, bytes] | None = None) -> Path:
    """A tiny VOC tree: three 64x48 photos, faces named 'masked' and 'bare', one 'hand'."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    images = images if images is not None else {"a.jpg": jpeg(64, 48, 0), "b.jpg": jpeg(64, 48, 40),
                                                "c.jpg": jpeg(64, 48, 80)}
    annotations = annotations if annotations is not None else {
        "a.xml": voc_xml("a.jpg", (64, 48), [("masked", 1, 1, 20, 24), ("hand", 30, 30, 40, 40)]),
        "b.xml": voc_xml("b.jpg", (64, 48), [("bare", 10, 5, 64, 48), ("bare", 2, 2, 8, 8, 1)]),
        "c.xml": voc_xml("c.jpg", None, []),
    }
    for name, data in images.items():
        (root / "JPEGImages" / name).write_bytes(data)
    for name, text in annotations.items():
        (root / "Annotations" / name).write_text(text)
    return root


def coco_json(images: list[dict] | None = None, annotations: list[dict] | None = None) -> dict:
    return {
        "images": images if images is not None else [
            {"id": 1, "file_name": "p.jpg", "width": 80, "height": 60},
            {"id": 2, "file_name": "q.jpg", "width": 80, "height": 60}],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10.5, 5.25, 20.0, 24.0], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [40, 10, 30, 30], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [0, 0, 10, 10], "iscrowd": 0}],
        "categories": [{"id": 7, "name": "face"}, {"id": 9, "name": "car"}],
    }


def make_coco(root: Path, data: dict | str | None = None, images: dict[str, bytes] | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    for name, blob in (images if images is not None else {"p.jpg": jpeg(80, 60), "q.jpg": jpeg(80, 60, 50)}).items():
        (root / "images" / name).write_bytes(blob)
    text = data if isinstance(data, str) else json.dumps(coco_json() if data is None else data, indent=1)
    (root / "instances.json").write_text(text)
    return root


def coco(root: Path, **kw) -> ExtraSource:
    return ExtraSource(format="coco", path=str(root), annotations="instances.json", images="images", **kw)


def index(name: str, source: ExtraSource, tmp_path: Path) -> tuple[dict, dict[str, list]]:
    """Index a source; returns (source.json, image -> WIDER rows)."""
    out = tmp_path / "extra" / f"{name}.zip"
    out.parent.mkdir(exist_ok=True)
    summary = write_extra_index(name, source, out)
    with zipfile.ZipFile(out) as zf:
        text = zf.read(f"wider_face_split/{name}_train_bbx_gt.txt").decode()
    from facedet.data.wider_gt import parse_gt_txt

    return summary, {r.image: r.gt_rows.tolist() for r in parse_gt_txt(text)}


# ---------------------------------------------------------------------------------------------
# what a good source becomes


def test_voc_devkit_corners_are_one_based_and_difficult_faces_are_ignored(tmp_path):
    summary, rows = index("masks", ExtraSource(format="voc", path=str(make_voc(tmp_path / "voc")),
                                               names=["masked", "bare"]), tmp_path)
    assert summary["pixel_origin"] == 1 and summary["faces_by_name"] == {"bare": 2, "masked": 1}
    # xmin 1 .. xmax 20 (1-based, inclusive) is pixels 0..19: x1 0, w 20
    assert rows["masks/a.jpg"] == [[0, 0, 20, 24, 0, 0, 0, 0, 0, 0]]
    assert rows["masks/b.jpg"] == [[9, 4, 55, 44, 0, 0, 0, 0, 0, 0], [1, 1, 7, 7, 0, 0, 0, 1, 0, 0]]
    assert rows["masks/c.jpg"] == []  # an image without faces stays, as a negative
    assert summary["images"] == 3 and summary["faces"] == 3 and summary["ignored"] == 1


def test_voc_with_a_zero_corner_or_floats_is_read_as_zero_based(tmp_path):
    root = make_voc(tmp_path / "voc", {"a.xml": voc_xml("a.jpg", (64, 48), [("f", 0, 2, 20.5, 24)])},
                    {"a.jpg": jpeg(64, 48)})
    summary, rows = index("zero", ExtraSource(format="voc", path=str(root)), tmp_path)
    assert summary["pixel_origin"] == 0 and rows["zero/a.jpg"] == [[0, 2, 21, 22, 0, 0, 0, 0, 0, 0]]
    _, forced = index("forced", ExtraSource(format="voc", path=str(root), pixel_origin=1), tmp_path)
    assert forced["forced/a.jpg"] == [[0, 1, 21, 23, 0, 0, 0, 0, 0, 0]]  # x -1 clipped to 0


def test_a_box_one_pixel_past_the_edge_is_clipped_as_exporters_write_it(tmp_path):
    root = make_voc(tmp_path / "voc", {"a.xml": voc_xml("a.jpg", (64, 48), [("f", 50, 10, 65, 49)])},
                    {"a.jpg": jpeg(64, 48)})
    _, rows = index("edge", ExtraSource(format="voc", path=str(root)), tmp_path)
    assert rows["edge/a.jpg"] == [[49, 9, 15, 39, 0, 0, 0, 0, 0, 0]]


def test_coco_boxes_are_zero_based_floats_and_iscrowd_is_an_ignored_region(tmp_path):
    summary, rows = index("cc", coco(make_coco(tmp_path / "coco"), names=["face"]), tmp_path)
    assert rows["cc/p.jpg"] == [[11, 5, 20, 24, 0, 0, 0, 0, 0, 0], [40, 10, 30, 30, 0, 0, 0, 1, 0, 0]]
    assert rows["cc/q.jpg"] == []  # its only box is a car
    assert summary["faces_by_name"] == {"face": 1, "iscrowd (ignored)": 1}


def test_the_same_source_gives_the_same_bytes(tmp_path):
    source = ExtraSource(format="voc", path=str(make_voc(tmp_path / "voc")))
    write_extra_index("m", source, tmp_path / "a.zip")
    write_extra_index("m", source, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


@pytest.fixture
def raw(tmp_path) -> Path:
    raw = tmp_path / "raw"
    write_synthetic_dataset(SyntheticParams(seed=4, train_images=6, val_images=4, min_side=48, max_side=96), raw)
    return raw


def test_sources_join_the_train_split_and_the_filter_counts_faces_by_source(tmp_path, raw):
    index("masks", ExtraSource(format="voc", path=str(make_voc(tmp_path / "voc"))), tmp_path)
    index("cc", coco(make_coco(tmp_path / "coco")), tmp_path)
    val_before = (raw / "WIDER_val.zip").read_bytes()
    said: list[str] = []
    summaries = add_extra_train(raw, ["masks", "cc"], "embedded", tmp_path / "extra", said.append)
    assert set(summaries) == {"masks", "cc"} and len(said) == 2
    assert (raw / "WIDER_val.zip").read_bytes() == val_before
    archive = WiderArchive(raw)
    images = [r.image for r in archive.records("train")]
    assert "masks/a.jpg" in images and "cc/p.jpg" in images and len(images) == 6 + 3 + 2
    assert archive.read_image("train", "masks/b.jpg") == (tmp_path / "voc/JPEGImages/b.jpg").read_bytes()

    stats, _ = run_filter(archive, FilterParams(), tmp_path / "interim", splits=("train",))
    by_source = stats["train"]["by_source"]
    assert list(by_source) == ["embedded", "cc", "masks"]
    assert by_source["masks"] == {"images_in": 3, "images_kept": 3, "faces_in": 4, "faces_kept": 3}  # difficult: invalid
    assert by_source["cc"]["faces_in"] == 3 and by_source["cc"]["faces_kept"] == 2  # iscrowd dropped as invalid
    assert by_source["embedded"]["images_in"] == 6
    assert sum(s["faces_kept"] for s in by_source.values()) == stats["train"]["faces_kept"]


def test_a_wider_layout_tree_joins_as_one_event_holding_its_events(tmp_path, raw):
    other = tmp_path / "mine"
    write_synthetic_dataset(SyntheticParams(seed=9, train_images=3, val_images=1, min_side=48, max_side=64), other)
    for name in ("WIDER_train.zip", "wider_face_split.zip"):
        with zipfile.ZipFile(other / name) as zf:
            zf.extractall(tmp_path / "tree")
    summary, rows = index("mine", ExtraSource(format="wider", path=str(tmp_path / "tree")), tmp_path)
    assert summary["images"] == 3 and all(image.count("/") == 2 and image.startswith("mine/") for image in rows)
    add_extra_train(raw, ["mine"], "embedded", tmp_path / "extra")
    assert {r.image for r in WiderArchive(raw).records("train")} >= set(rows)


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the file and the line / XML element / JSON index


def bad_voc(tmp_path: Path, xml: str, images: dict[str, bytes] | None = None) -> str:
    root = make_voc(tmp_path / "voc", {"x.xml": xml}, images if images is not None else {"x.jpg": jpeg(64, 48)})
    with pytest.raises(AnnotationError) as err:
        write_extra_index("v", ExtraSource(format="voc", path=str(root)), tmp_path / "v.zip")
    assert "\n" not in str(err.value) and not (tmp_path / "v.zip").exists()
    return str(err.value).replace(str(root) + "/", "")


@pytest.mark.parametrize("xml, images, expected", [
    ("<annotation><filename>x.jpg</filename>\n<object><name>f</name>\n</annotation>", None,
     "Annotations/x.xml:3: malformed XML (mismatched tag"),
    (voc_xml("gone.jpg", None, []), None, "Annotations/x.xml: annotation/filename: image JPEGImages/gone.jpg not found"),
    (voc_xml("x.jpg", None, []), {"x.jpg": b"<html>not a picture</html>"}, "JPEGImages/x.jpg (named by "),
    (voc_xml("x.jpg", (64, 48), [("f", 10, 10, 70, 20)]), None,
     "Annotations/x.xml: object[0] (f): box (x 9.0 to 70.0, y 9.0 to 20.0) lies outside the 64x48 image"),
    (voc_xml("x.jpg", (64, 48), [("f", 10, 10, 30, 30), ("f", 20, 10, 8, 30)]), None,
     "Annotations/x.xml: object[1] (f): empty or negative box"),
    (voc_xml("x.jpg", (64, 48), [("f", 10, 10, 10, 30)]), None, None),  # 1 px wide in 1-based: fine
    (voc_xml("x.jpg", (640, 480), []), None, "Annotations/x.xml: annotation/size: the annotation says 640x480 px, "
                                             "the image is 64x48"),
    (voc_xml("x.jpg", (48, 64), []), None, "an EXIF-rotated photo?"),
    (voc_xml("x.jpg", None, [("f", 1, 2, "three", 4)]), None, "Annotations/x.xml: object[0]/bndbox/xmax: not a number"),
    (voc_xml("x.bmp", None, []), None, "Annotations/x.xml: annotation/filename: image 'x.bmp' is not a .jpg"),
])
def test_bad_voc_gives_one_line_naming_the_file_and_element(tmp_path, xml, images, expected):
    if expected is None:
        root = make_voc(tmp_path / "voc", {"x.xml": xml}, {"x.jpg": jpeg(64, 48)})
        write_extra_index("v", ExtraSource(format="voc", path=str(root)), tmp_path / "v.zip")
        return
    message = bad_voc(tmp_path, xml, images)
    assert expected in message, message
    if images:
        assert "not an image" in message


def bad_coco(tmp_path: Path, data: dict | str, images: dict[str, bytes] | None = None, **kw) -> str:
    root = make_coco(tmp_path / "coco", data, images)
    with pytest.raises(AnnotationError) as err:
        write_extra_index("c", coco(root, **kw), tmp_path / "c.zip")
    assert "\n" not in str(err.value) and not (tmp_path / "c.zip").exists()
    return str(err.value).replace(str(root) + "/", "")


def one_box(bbox: list, **extra) -> dict:
    return coco_json(annotations=[{"id": 1, "image_id": 1, "category_id": 7, "bbox": bbox, **extra}])


@pytest.mark.parametrize("data, images, expected", [
    ('{"images": [],\n "annotations": [,]}', None, "instances.json:2: malformed JSON (Expecting value"),
    (coco_json(images=[{"id": 1, "file_name": "p.jpg", "width": 80, "height": 60},
                       {"id": 2, "file_name": "gone.jpg", "width": 80, "height": 60}], annotations=[]), None,
     "instances.json: images[1].file_name: image images/gone.jpg not found"),
    (coco_json(), {"p.jpg": jpeg(80, 60), "q.jpg": b"GIF89a broken"}, "images/q.jpg (instances.json: images[1]): "
                                                                     "not an image"),
    (one_box([70, 10, 20, 20]), None, "instances.json: annotations[0].bbox: box (x 70.0 to 90.0, y 10.0 to 30.0) "
                                      "lies outside the 80x60 image"),
    (one_box([10, 10, 0, 20]), None, "instances.json: annotations[0].bbox: empty or negative box"),
    (one_box([10, 10, 5, -3]), None, "instances.json: annotations[0].bbox: empty or negative box"),
    (one_box([10, 10, 5]), None, "instances.json: annotations[0].bbox: expected [x, y, w, h] numbers"),
    (coco_json(images=[{"id": 1, "file_name": "p.jpg", "width": 100, "height": 60}], annotations=[]), None,
     "instances.json: images[0]: width, height: the annotation says 100x60 px, the image is 80x60"),
    (coco_json(images=[{"id": 1, "file_name": "p.jpg"}, {"id": 2, "file_name": "p.jpg"}], annotations=[]), None,
     "instances.json: images[1]: file_name 'p.jpg' named twice (first at "),
    (coco_json(annotations=[{"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 1, 2, 2]}]), None,
     "instances.json: annotations[0].image_id: no image has id 5"),
    ({"images": []}, None, "instances.json: 'annotations' missing"),
    ('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}", None, "instances.json: JSON nested too deeply to read"),
])
def test_bad_coco_gives_one_line_naming_the_file_and_json_index(tmp_path, data, images, expected):
    message = bad_coco(tmp_path, data, images)
    assert expected in message, message


def test_an_unknown_name_asked_for_lists_the_names_there(tmp_path):
    with pytest.raises(AnnotationError, match=r"^data.extra_train.v.names: 'mask' not found in .*/Annotations "
                                              r"\(names there: bare, hand, masked\)$"):
        write_extra_index("v", ExtraSource(format="voc", path=str(make_voc(tmp_path / "voc")), names=["mask"]),
                          tmp_path / "v.zip")
    message = bad_coco(tmp_path, coco_json(), names=["face", "person"])
    assert message == "data.extra_train.c.names: 'person' not found in instances.json categories (names there: car, face)"


def test_two_annotations_naming_one_image_are_refused(tmp_path):
    root = make_voc(tmp_path / "voc2", {"x.xml": voc_xml("x.jpg", None, []), "y.xml": voc_xml("x.jpg", None, [])},
                    {"x.jpg": jpeg(64, 48)})
    with pytest.raises(AnnotationError, match=r"Annotations/y.xml: annotation/filename: x.jpg is also named by "):
        write_extra_index("v", ExtraSource(format="voc", path=str(root)), tmp_path / "v.zip")


def test_two_sources_naming_the_same_image_are_refused(tmp_path, raw):
    index("one", ExtraSource(format="voc", path=str(make_voc(tmp_path / "voc"))), tmp_path)
    index("two", coco(make_coco(tmp_path / "coco", images={"p.jpg": (tmp_path / "voc/JPEGImages/b.jpg").read_bytes(),
                                                           "q.jpg": jpeg(80, 60, 50)},
                                data=coco_json(images=[{"id": 1, "file_name": "p.jpg", "width": 64, "height": 48},
                                                       {"id": 2, "file_name": "q.jpg"}], annotations=[]))), tmp_path)
    with pytest.raises(AnnotationError, match=r"^extra source 'two' image p.jpg and extra source 'one' image b.jpg "
                                              r"are the same image \(sha256 [0-9a-f]{12}\.\.\.\): two sources name"):
        add_extra_train(raw, ["one", "two"], "embedded", tmp_path / "extra")


def test_an_extra_image_that_is_a_val_image_is_refused(tmp_path, raw):
    val_image = WiderArchive(raw).records("val")[0].image
    data = WiderArchive(raw).read_image("val", val_image)
    size = Image.open(io.BytesIO(data)).size
    index("leak", coco(make_coco(tmp_path / "coco", images={"p.jpg": data},
                                 data=coco_json(images=[{"id": 1, "file_name": "p.jpg", "width": size[0],
                                                         "height": size[1]}], annotations=[]))), tmp_path)
    with pytest.raises(AnnotationError, match=f"image p.jpg and the embedded source's WIDER_val/images/{val_image} "
                                              "are the same image"):
        add_extra_train(raw, ["leak"], "embedded", tmp_path / "extra")


def test_a_wider_extra_without_its_layout_names_the_param(tmp_path):
    (tmp_path / "tree").mkdir()
    with pytest.raises(WiderFormatError, match=r"^data.extra_train.w.path: .* holds neither the official WIDERFace "
                                               r"archives nor the unpacked tree: missing WIDER_train.zip or "):
        write_extra_index("w", ExtraSource(format="wider", path=str(tmp_path / "tree")), tmp_path / "w.zip")


@pytest.mark.parametrize("extra, message", [
    ({"a b": {"format": "voc", "path": "x"}}, "'data.extra_train.a b': a source name is letters"),
    ({"c": {"format": "coco", "path": "x"}}, "'data.extra_train.c.annotations' is needed for format coco"),
    ({"v": {"format": "voc", "path": "x", "annotations": "a.json"}}, "annotations and images are for format coco"),
    ({"v": {"format": "yolo", "path": "x"}}, "'data.extra_train.v.format' must be one of ['voc', 'coco', 'wider']"),
    ({"v": {"format": "voc"}}, "missing key 'data.extra_train.v.path'"),
    ({"c": {"format": "coco", "path": "x", "annotations": "../a.json"}},
     "'data.extra_train.c.annotations' must lie inside path (DVC watches path)"),
    ([{"format": "voc", "path": "x"}], "'data.extra_train' must be a mapping"),
])
def test_bad_extra_train_params_name_the_key(extra, message):
    with pytest.raises(ParamsError) as err:
        build(DataParams, {"extra_train": extra}, "data")
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------
# the stages, as a user runs them


def run_stage(cwd: Path, module: str, *args: str, extra_train: dict | None = None) -> subprocess.CompletedProcess:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["synthetic"].update(train_images=6, val_images=4)
    params["data"]["extra_train"] = extra_train or {}
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True)


def assert_one_line(result: subprocess.CompletedProcess, start: str) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    return lines[0]


def test_the_stages_stop_with_one_line_and_leave_nothing_half_written(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    voc = make_voc(tmp_path / "voc")
    extra = {"masks": {"format": "voc", "path": str(voc)}, "cc": {"format": "coco", "path": str(make_coco(tmp_path / "coco")),
                                                                  "annotations": "instances.json", "images": "images"}}
    for name in extra:
        done = run_stage(work, "stages.extra_train", name, extra_train=extra)
        assert done.returncode == 0, done.stderr
    done = run_stage(work, "stages.fetch", extra_train=extra)
    assert done.returncode == 0, done.stderr
    assert "fetch: extra source 'masks' (voc): 3 images, 4 faces (1 ignored regions)" in done.stdout
    sources = json.loads((work / "data/raw/sources.json").read_text())
    assert sources["source"] == "embedded" and sources["extra_train"]["cc"]["format"] == "coco"

    (voc / "Annotations/b.xml").write_text("<annotation><filename>b.jpg</filename>")
    failed = run_stage(work, "stages.extra_train", "masks", extra_train=extra)
    assert "b.xml:1: malformed XML" in assert_one_line(failed, "extra_train@masks: error: ")
    assert (work / "data/extra/masks.zip").is_file()  # the last good index stays until a good one replaces it
    assert not list((work / "data/extra").glob(".masks.zip.tmp-*"))

    (work / "data/extra/cc.zip").unlink()
    raw_before = sorted(p.name for p in (work / "data/raw").iterdir())
    failed = run_stage(work, "stages.fetch", extra_train=extra)
    assert "data/extra/cc.zip: missing: the extra_train@cc stage writes it" in assert_one_line(failed, "fetch: error: ")
    assert sorted(p.name for p in (work / "data/raw").iterdir()) == raw_before
    assert not list((work / "data").glob(".raw.tmp-*"))

    failed = run_stage(work, "stages.extra_train", "nope", extra_train=extra)
    assert "no source 'data.extra_train.nope'" in assert_one_line(failed, "extra_train@nope: error: ")


@pytest.mark.slow
def test_dvc_runs_one_stage_per_source_and_reruns_only_the_changed_one(tmp_path):
    from pipeline_copy import SMALL, fresh_copy, run, stages_run

    voc, cc = make_voc(tmp_path / "voc"), make_coco(tmp_path / "coco")
    extra = {"masks": {"format": "voc", "path": str(voc)},
             "cc": {"format": "coco", "path": str(cc), "annotations": "instances.json", "images": "images"}}
    repo = fresh_copy(tmp_path / "facedet", {**SMALL, ("data", "extra_train"): extra})
    log = run(["dvc", "repro", "filter"], repo)
    assert {s for s in ("extra_train@masks", "extra_train@cc") if f"Running stage '{s}'" in log} == {"extra_train@masks",
                                                                                                      "extra_train@cc"}
    assert stages_run(log) == {"fetch", "filter"}
    counts = json.loads((repo / "reports/filter.json").read_text())["train"]["by_source"]
    assert set(counts) == {"embedded", "masks", "cc"}

    (voc / "Annotations/c.xml").write_text(voc_xml("c.jpg", (64, 48), [("bare", 5, 5, 30, 30)]))
    status = json.loads(run(["dvc", "status", "--json"], repo))
    assert "extra_train@masks" in status and "extra_train@cc" not in status and "fetch" not in status
    log = run(["dvc", "repro", "filter"], repo)
    assert "Running stage 'extra_train@masks'" in log and "Running stage 'extra_train@cc'" not in log
    assert stages_run(log) == {"fetch", "filter"}
    counts = json.loads((repo / "reports/filter.json").read_text())["train"]["by_source"]
    assert counts["masks"]["faces_kept"] == 4
