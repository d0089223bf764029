"""Scoring: the official WIDER protocol, COCO mAP, the submission format, plots."""
