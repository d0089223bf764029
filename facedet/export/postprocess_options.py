"""The `TFLite_Detection_PostProcess` option the converter drops, written back into the file.

The converter writes the op's attributes into its custom options (a flexbuffer map the kernel reads by
key), but not `detections_per_class` (TF 2.21): the kernel then keeps at most its default, 100 boxes
per class, under regular NMS, whatever `max_detections` says. `with_detections_per_class` writes it back.
Fast NMS (`use_regular_nms: false`) never reads it.
"""

from __future__ import annotations

from flatbuffers import flexbuffers

from facedet.runtime.tflite_detector import POSTPROCESS_OP


def with_detections_per_class(content: bytes, detections_per_class: int) -> bytes:
    """`content` (a `.tflite` flatbuffer) with its post-process op's `detections_per_class` option set."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    op = _postprocess_op(model)
    options = flexbuffers.Loads(bytes(op.customOptions))
    if options.get("detections_per_class") == detections_per_class:
        return content
    op.customOptions = list(flexbuffers.Dumps({**options, "detections_per_class": int(detections_per_class)}))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _postprocess_op(model):
    """The one post-process operator of the model's first subgraph (ValueError if none)."""
    found = [op for op in model.subgraphs[0].operators
             if model.operatorCodes[op.opcodeIndex].customCode == POSTPROCESS_OP.encode()]
    if len(found) != 1:
        raise ValueError(f"expected one {POSTPROCESS_OP} op, found {len(found)}")
    return found[0]
