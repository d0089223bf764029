"""Time the data stages on a generated WIDER-sized-per-image workload, against baselines measured in
the same run:

- shard: `write_shards` + `ExampleEncoder` (original JPEG bytes, `--workers` processes) on `--images`
  ~1024x700 JPEGs read from a WIDER_train.zip as fetch leaves it in data/raw (stored), against a
  straightforward single-process writer that decodes and re-encodes each image (the original
  recipe's approach; timed on `--baseline-images` and compared per image), against the same pass-through
  writer on 1 process, and against the disk (the same number of bytes written and fsynced);
- fetch: storing the downloaded (deflated) archive uncompressed, and reading a member either way;
- filter: the per-image check (header + full decode as training decodes, libjpeg warnings caught)
  against the header alone, in one process and in the stage's `--workers` spawned processes;
- parse: the full-size train annotation (12,880 images, 159,424 faces).

    python bench/data_speed.py [--images 2000] [--workers 2] [--baseline-images 200] [--repeat 3]

On a shared machine the numbers move with the load: each writer's best of `--repeat` runs counts.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from facedet.data.filtering import FilteredImage, image_workers, inspect_image, inspect_images  # noqa: E402
from facedet.data.wider_archive import WiderArchive, image_member  # noqa: E402
from facedet.data.wider_gt import parse_gt_txt  # noqa: E402
from facedet.process.zips import repack_stored  # noqa: E402

from synthetic_wider import full_size_gt_txt  # noqa: E402

MiB = 1 << 20


def base_jpegs(count: int, width: int, height: int, seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs (smooth colour field + noise; ~130 kB at 1024x700; WIDER averages 114 kB)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
        img = img + rng.normal(0, 3, (height, width, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _header_only(data: bytes) -> None:
    """What the filter checked before the full decode: Pillow's header parse and verify()."""
    with Image.open(io.BytesIO(data)) as img:
        img.verify()


def unique(jpeg: bytes, index: int) -> bytes:
    """`jpeg` made unique without re-encoding: a COM segment after SOI holding `index`."""
    text = f"facedet bench image {index}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def make_workload(root: Path, images: int, width: int, height: int) -> tuple[Path, list[FilteredImage]]:
    """A deflated WIDER_train.zip as a mirror serves it (in root/downloads), and the filtered table."""
    rng = np.random.default_rng(1)
    bases = base_jpegs(16, width, height)
    items = []
    (root / "downloads").mkdir()
    with zipfile.ZipFile(root / "downloads/WIDER_train.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(images):
            name = f"{i % 61}--Event/{i % 61}_Event_Event_1_{i}.jpg"
            zf.writestr(image_member("train", name), unique(bases[i % len(bases)], i))
            n = int(rng.integers(1, 25))
            xy = rng.uniform(0, [width - 40, height - 40], (n, 2))
            wh = rng.uniform(6, 40, (n, 2))
            items.append(FilteredImage(name, width, height, np.hstack([xy, wh]).astype(np.float32)))
    return root / "downloads/WIDER_train.zip", items


def reencoding_writer(archive: WiderArchive, items: list[FilteredImage], out: Path) -> None:
    """The baseline: one process, every image decoded and re-encoded, one TFRecord file."""
    import tensorflow as tf

    from facedet.data.tfrecord_writer import make_example

    with tf.io.TFRecordWriter(str(out)) as writer:
        for item in items:
            with Image.open(io.BytesIO(archive.read_image("train", item.image))) as img:
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="JPEG", quality=95)
            example = make_example(buf.getvalue(), item.image, item.width, item.height, item.boxes_xywh)
            writer.write(example.SerializeToString())


def fsync_all(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def time_shards(archive, items, out_dir: Path, workers: int, shards: int) -> tuple[float, int, float]:
    """(wall s, shard bytes, CPU s of this process and its workers) of writing + fsyncing the shards."""
    from facedet.data.tfrecord_writer import ExampleEncoder, write_shards

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    cpu0, t0 = os.times(), time.perf_counter()
    paths = write_shards(out_dir / "train.record", items, shards, encode=ExampleEncoder(archive, "train"),
                         workers=workers)
    fsync_all(paths)
    wall, cpu1 = time.perf_counter() - t0, os.times()
    cpu = sum(cpu1[k] - cpu0[k] for k in range(4))  # user, system, children user, children system
    return wall, sum(p.stat().st_size for p in paths), cpu


def disk_write_rate(directory: Path, nbytes: int) -> float:
    """MiB/s of writing `nbytes` (1 MiB blocks) and fsyncing them."""
    block = os.urandom(MiB)
    path = directory / "disk.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(max(1, nbytes // MiB)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    rate = max(1, nbytes // MiB) / (time.perf_counter() - t0)
    path.unlink()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=700)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--baseline-images", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="each writer runs this often; the best time counts")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory (removed)")
    args = parser.parse_args()

    text, _ = full_size_gt_txt(seed=0)
    parse_s = min(_timed(lambda: parse_gt_txt(text)) for _ in range(3))
    print(f"parse: full-size train gt txt (12,880 images, 159,424 faces) in {parse_s:.2f} s (best of 3; target < 1 s)")

    root = Path(tempfile.mkdtemp(prefix="facedet-bench-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        download, items = make_workload(root, args.images, args.width, args.height)
        zip_mib = download.stat().st_size / MiB
        print(f"workload: {len(items)} JPEGs {args.width}x{args.height}, {zip_mib / len(items) * 1024:.0f} kB each, "
              f"{zip_mib:.0f} MiB deflated zip (made in {time.perf_counter() - t0:.1f} s)")
        repack_s = _timed(lambda: repack_stored(download, root / "WIDER_train.zip"))
        print(f"fetch: storing the archive uncompressed for data/raw: {len(items) / repack_s:,.0f} img/s")
        deflated, archive = WiderArchive(root / "downloads"), WiderArchive(root)
        inflate_s = _timed(lambda: [deflated.read_image("train", it.image) for it in items[:300]])
        stored_s = _timed(lambda: [archive.read_image("train", it.image) for it in items[:300]])
        print(f"reading a member: {300 / stored_s:,.0f} img/s stored vs {300 / inflate_s:,.0f} img/s deflated")

        sample = [archive.read_image("train", it.image) for it in items[:100]]
        header_s = _timed(lambda: [_header_only(d) for d in sample]) / len(sample)
        inspect_image(sample[0])  # TensorFlow starts on the first decode (once per worker in the stage): not timed
        check_s = _timed(lambda: [inspect_image(d) for d in sample]) / len(sample)
        print(f"filter image check, 1 process: header + full decode {check_s * 1e3:.2f} ms per image vs header "
              f"only {header_s * 1e3:.2f} ms ({check_s / header_s:.0f}x)")
        names = [it.image for it in items]
        with image_workers(args.workers) as pool:
            first_s = _timed(lambda: inspect_images(archive, "train", names, pool=pool))
            again_s = _timed(lambda: inspect_images(archive, "train", names, pool=pool))
        rate = len(items) / again_s
        print(f"filter image check, {args.workers} spawned workers: {rate:,.0f} img/s once started "
              f"(start-up, once per stage run: ~{max(first_s - again_s, 0):.0f} s); WIDER train + val "
              f"(16,106 images): ~{16_106 / rate:.0f} s")

        import tensorflow as tf  # noqa: F401  (imported before timing, as in the stage)

        base_items = items[: args.baseline_images]
        cpu0 = time.process_time()
        base_s = min(_timed(lambda: reencoding_writer(archive, base_items, root / "baseline.record"))
                     for _ in range(args.repeat))
        base_cpu = (time.process_time() - cpu0) / args.repeat / len(base_items)
        base_rate = len(base_items) / base_s
        print(f"baseline (1 process, decode + re-encode): {base_rate:,.0f} img/s on {len(base_items)} images "
              f"({base_cpu * 1e3:.2f} ms CPU per image)")

        one_s, _, one_cpu = min(time_shards(archive, items, root / "one", 1, args.shards) for _ in range(args.repeat))
        many_s, nbytes, many_cpu = min(time_shards(archive, items, root / "many", args.workers, args.shards)
                                       for _ in range(args.repeat))
        same = all((root / "one" / p.name).read_bytes() == p.read_bytes() for p in (root / "many").iterdir())
        one_rate, many_rate = len(items) / one_s, len(items) / many_s
        print(f"pass-through, 1 process: {one_rate:,.0f} img/s ({one_rate / base_rate:.1f}x baseline; "
              f"{one_cpu / len(items) * 1e3:.2f} ms CPU per image)")
        print(f"pass-through, {args.workers} processes: {many_rate:,.0f} img/s = {nbytes / MiB / many_s:,.0f} MiB/s "
              f"({many_rate / base_rate:.1f}x baseline; {many_cpu / len(items) * 1e3:.2f} ms CPU per image; "
              f"{many_cpu / many_s:.1f} cores busy; shards byte-identical to 1 process: {same})")

        from facedet.data.tfrecord_writer import check_shards

        check_s = _timed(lambda: check_shards(sorted((root / "many").iterdir()), items))
        print(f"shard check (read back, every box): {len(items) / check_s:,.0f} img/s")

        disk = disk_write_rate(root, nbytes)
        print(f"disk: {disk:,.0f} MiB/s writing {nbytes / MiB:,.0f} MiB with fsync; the shard writer reaches "
              f"{nbytes / MiB / many_s / disk:.0%} of it")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
