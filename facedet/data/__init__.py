"""Faces in: WIDER formats, the synthetic set, downloads and other sources, filtering, TFRecords."""
