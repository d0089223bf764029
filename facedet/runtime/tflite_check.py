"""Check a `.tflite` file's structure before an interpreter sees it.

The TFLite interpreter trusts the flatbuffer it is given: a truncated file makes it read past the end
of the data (a segfault, exit status 139, no message) or raise a RuntimeError traceback. So
`check_tflite_file` walks the flatbuffer first, every read bounds-checked: the 'TFL3' identifier,
the root table, every buffer (inline bytes, or offset + size for models over 2 GB) lying inside the
file, every subgraph's tensors naming an existing buffer, every operator an existing op code and
existing tensors, custom options inside the file. A truncated, foreign or garbled file ends in one
`TFLiteFileError` line naming the file and what is wrong.

Structural, not a child process: it costs milliseconds and needs no TensorFlow (`detect`, the
evaluation stages and the benchmarks each load models several times), it says *what* is wrong, and
it protects every caller, not only those that would pay a second interpreter start in a subprocess.
It cannot prove a file the interpreter will run (an op's options are trusted), but every truncation
and every file that is not a TFLite flatbuffer is refused.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
# field slots of the TFLite schema tables read here (tensorflow/lite/schema/schema.fbs)
MODEL_VERSION, MODEL_OPCODES, MODEL_SUBGRAPHS, MODEL_BUFFERS = 0, 1, 2, 4
BUFFER_DATA, BUFFER_OFFSET, BUFFER_SIZE = 0, 1, 2
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS, SUBGRAPH_OPERATORS = 0, 1, 2, 3
TENSOR_SHAPE, TENSOR_BUFFER = 0, 2
OPERATOR_OPCODE, OPERATOR_INPUTS, OPERATOR_OUTPUTS, OPERATOR_CUSTOM_OPTIONS = 0, 1, 2, 5


class TFLiteFileError(ValueError):
    """The file is not a complete TFLite model; the message names the file and the problem."""


class _Flatbuffer:
    """Bounds-checked reads of flatbuffer tables and vectors in `data`."""

    def __init__(self, data: bytes):
        self.data = data

    def _unpack(self, fmt: str, pos: int, what: str):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise _OutOfFile(what, pos + size)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> tuple[int, int, int]:
        """(table position, its vtable position, vtable length) of the table at `pos`."""
        vtable = pos - self._unpack("<i", pos, what)
        vtable_len = self._unpack("<H", vtable, what)
        table_len = self._unpack("<H", vtable + 2, what)
        if vtable_len < 4 or pos + table_len > len(self.data):
            raise _OutOfFile(what, pos + table_len)
        return pos, vtable, vtable_len

    def field(self, table: tuple[int, int, int], slot: int, what: str) -> int:
        """Absolute position of field `slot` of `table`, 0 if absent."""
        pos, vtable, vtable_len = table
        entry = 4 + 2 * slot
        offset = self._unpack("<H", vtable + entry, what) if entry + 2 <= vtable_len else 0
        return pos + offset if offset else 0

    def scalar(self, table, slot: int, fmt: str, default: int, what: str) -> int:
        pos = self.field(table, slot, what)
        return self._unpack(fmt, pos, what) if pos else default

    def vector(self, table, slot: int, element_size: int, what: str) -> tuple[int, int]:
        """(position of the first element, length) of vector field `slot` ((0, 0) if absent)."""
        pos = self.field(table, slot, what)
        if not pos:
            return 0, 0
        start = pos + self._unpack("<I", pos, what)
        length = self._unpack("<I", start, what)
        if start + 4 + length * element_size > len(self.data):
            raise _OutOfFile(what, start + 4 + length * element_size)
        return start + 4, length

    def tables(self, table, slot: int, what: str) -> list[tuple[int, int, int]]:
        first, length = self.vector(table, slot, 4, what)
        return [self.table(first + 4 * i + self._unpack("<I", first + 4 * i, what), f"{what}[{i}]")
                for i in range(length)]

    def ints(self, table, slot: int, what: str) -> list[int]:
        first, length = self.vector(table, slot, 4, what)
        return [self._unpack("<i", first + 4 * i, what) for i in range(length)]


class _OutOfFile(Exception):
    def __init__(self, what: str, end: int):
        super().__init__(what, end)
        self.what, self.end = what, end


def check_tflite_file(path: str | os.PathLike) -> None:
    """Raise FileNotFoundError or TFLiteFileError (one line) unless `path` is a structurally
    complete TFLite flatbuffer (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such TFLite model")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise TFLiteFileError(f"{path}: not a TFLite model file (no 'TFL3' identifier)")
    fb = _Flatbuffer(data)
    try:
        _check_model(fb, path)
    except _OutOfFile as err:
        raise TFLiteFileError(f"{path}: truncated or corrupt TFLite file: {err.what} reaches byte {err.end:,}, "
                              f"the file has {len(data):,} bytes") from None


def _check_model(fb: _Flatbuffer, path: Path) -> None:
    def bad(what: str) -> TFLiteFileError:
        return TFLiteFileError(f"{path}: corrupt TFLite file: {what}")

    model = fb.table(fb._unpack("<I", 0, "the root offset"), "the model table")
    version = fb.scalar(model, MODEL_VERSION, "<I", 0, "the schema version")
    if version != SCHEMA_VERSION:
        raise bad(f"schema version {version}, expected {SCHEMA_VERSION}")
    opcodes = len(fb.tables(model, MODEL_OPCODES, "the operator codes"))
    buffers = fb.tables(model, MODEL_BUFFERS, "the buffer list")
    for index, buffer in enumerate(buffers):
        fb.vector(buffer, BUFFER_DATA, 1, f"buffer {index}")
        offset = fb.scalar(buffer, BUFFER_OFFSET, "<Q", 0, f"buffer {index}")
        size = fb.scalar(buffer, BUFFER_SIZE, "<Q", 0, f"buffer {index}")
        if offset > 1 and offset + size > len(fb.data):
            raise _OutOfFile(f"buffer {index} (stored after the flatbuffer)", offset + size)
    subgraphs = fb.tables(model, MODEL_SUBGRAPHS, "the subgraph list")
    if not subgraphs:
        raise bad("no subgraph")
    for s, subgraph in enumerate(subgraphs):
        tensors = fb.tables(subgraph, SUBGRAPH_TENSORS, f"subgraph {s} tensors")
        for t, tensor in enumerate(tensors):
            fb.ints(tensor, TENSOR_SHAPE, f"tensor {t} shape")
            if fb.scalar(tensor, TENSOR_BUFFER, "<I", 0, f"tensor {t}") >= max(len(buffers), 1):
                raise bad(f"tensor {t} of subgraph {s} names buffer that does not exist")
        slots = [("inputs", SUBGRAPH_INPUTS), ("outputs", SUBGRAPH_OUTPUTS)]
        indices = [i for name, slot in slots for i in fb.ints(subgraph, slot, f"subgraph {s} {name}")]
        for o, op in enumerate(fb.tables(subgraph, SUBGRAPH_OPERATORS, f"subgraph {s} operators")):
            if fb.scalar(op, OPERATOR_OPCODE, "<I", 0, f"operator {o}") >= opcodes:
                raise bad(f"operator {o} of subgraph {s} has an unknown op code")
            indices += fb.ints(op, OPERATOR_INPUTS, f"operator {o} inputs")
            indices += fb.ints(op, OPERATOR_OUTPUTS, f"operator {o} outputs")
            fb.vector(op, OPERATOR_CUSTOM_OPTIONS, 1, f"operator {o} custom options")
        if any(i < -1 or i >= len(tensors) for i in indices):
            raise bad(f"subgraph {s} refers to a tensor that does not exist")
