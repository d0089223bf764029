"""Deterministic zips: fixed dates and permissions and checked member names, so the same members give the
same bytes (data/raw's archives, models/detector/model.keras) and DVC's cache hits across runs."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: every member gets it


class UnsafeMemberError(ValueError):
    """A zip member name that could escape the folder it is extracted into; one line naming the zip."""


def check_member_name(name: str, what: str) -> str:
    """`name` if it is a safe relative zip member name; UnsafeMemberError naming `what` (the zip) if it
    is absolute, has a drive letter or backslashes, or a '..' part (it could escape on extraction)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/", 1)[0] \
            or any(part == ".." for part in name.split("/")):
        raise UnsafeMemberError(f"{what}: unsafe member name {name!r} (absolute or '..')")
    return name


def _fixed_info(name: str, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(check_member_name(name, "zip member"), date_time=ZIP_DATE)
    info.create_system = 3
    info.external_attr = (0o755 << 16 | 0x10) if name.endswith("/") else 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return info


def with_fixed_member_dates(content: bytes) -> bytes:
    """`content` (a file that ends in a zip, such as a .tflite with its label file attached) with every
    member's date set to ZIP_DATE in its local and central headers; nothing else changes. Writers that
    stamp the time of writing (the TFLite metadata populator) then give the same bytes on every run."""
    year, month, day = ZIP_DATE[:3]
    stamp = struct.pack("<HH", 0, (year - 1980) << 9 | month << 5 | day)  # DOS time (00:00:00), DOS date
    out = bytearray(content)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:  # offsets below are from the start of `content`
        members, central = archive.infolist(), archive.start_dir
    for member in members:
        if out[member.header_offset:member.header_offset + 4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local header for {member.filename!r} at {member.header_offset}")
        out[member.header_offset + 10:member.header_offset + 14] = stamp
    for _ in members:
        if out[central:central + 4] != b"PK\x01\x02":
            raise zipfile.BadZipFile(f"no central directory entry at {central}")
        out[central + 12:central + 16] = stamp
        name_len, extra_len, comment_len = struct.unpack("<HHH", out[central + 28:central + 34])
        central += 46 + name_len + extra_len + comment_len
    return bytes(out)


def zip_bytes(members: Mapping[str, bytes], compress: bool) -> bytes:
    """A deterministic zip of `members` (name -> bytes): sorted names, fixed date and permissions,
    deflated (level 6) if `compress` else stored. Same members give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            zf.writestr(_fixed_info(name, compress), members[name], compresslevel=6 if compress else None)
    return buf.getvalue()


@contextlib.contextmanager
def stored_zip_writer(path: str | os.PathLike, mode: str = "w") -> Iterator[Callable[[str, bytes], None]]:
    """Yield add(name, data), which writes one member stored (no compression) with fixed date and
    permissions to the zip at `path` (mode "w": a new zip, "a": appended after its members), so the same
    calls give the same bytes. Names are checked (UnsafeMemberError on an unsafe one)."""
    with zipfile.ZipFile(path, mode) as out:
        yield lambda name, data: out.writestr(_fixed_info(name, False), data)


def repack_stored(src: str | os.PathLike, dst: str | os.PathLike, progress: Any = None) -> int:
    """Copy zip `src` to `dst` with every member stored (no compression), in the same order, with the
    same names and bytes, and fixed dates and permissions: readers then get a member with one seek
    and no inflate (JPEGs barely compress, so the archive grows little). Member names are checked
    (UnsafeMemberError on an unsafe one). progress: optional callable(n). Returns the member count."""
    count = 0
    with zipfile.ZipFile(src) as source, zipfile.ZipFile(dst, "w") as out:
        for info in source.infolist():
            out.writestr(_fixed_info(check_member_name(info.filename, str(src)), False), source.read(info))
            count += 1
            if progress:
                progress(1)
    return count
