"""params.yaml, typed: the loader and one dataclass per section."""
