"""Thin DVC stage entry points: `python -m stages.<name>`; all logic lives in `facedet`."""
