"""facedet: the library behind the WIDERFace -> int8 TFLite face-detector pipeline.

Stages in `stages/` stay thin; every reusable piece (WIDER format, boxes, anchors,
TFRecord schema, model, loss, evaluation, export) lives in one module here.
"""

__version__ = "0.1.0"
