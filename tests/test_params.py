"""A stage validates its params.yaml section before any work, failing with one line naming the key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from facedet.params.loader import ParamsError, field_range, load_section


@dataclass(frozen=True)
class Augment:
    flip: bool = True


@dataclass(frozen=True)
class TrainSpec:
    steps: int = field_range(1, None, default=10)
    learning_rate: float = field_range(0.0, 1.0, default=0.01)
    strategy: Literal["default", "mirrored"] = "default"
    weights: str | None = None
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0])
    augment: Augment = field(default_factory=Augment)


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_valid_section_becomes_a_typed_object(tmp_path):
    path = write(tmp_path, "train:\n  steps: 5\n  learning_rate: 1\n  aspect_ratios: [1, 0.5]\n  augment: {flip: false}\n")
    spec = load_section("train", TrainSpec, path)
    assert spec == TrainSpec(steps=5, learning_rate=1.0, aspect_ratios=[1.0, 0.5], augment=Augment(flip=False))


@pytest.mark.parametrize(
    "body, message",
    [
        ("  stpes: 5\n", "unknown key 'train.stpes' (did you mean 'train.steps'?)"),
        ("  steps: 0\n", "'train.steps' must be >= 1"),
        ("  steps: many\n", "'train.steps' must be an integer"),
        ("  steps: 2.5\n", "'train.steps' must be an integer"),
        ("  learning_rate: 3\n", "'train.learning_rate' must be <= 1.0"),
        ("  strategy: tpu\n", "'train.strategy' must be one of ['default', 'mirrored']"),
        ("  augment: {flip: 1}\n", "'train.augment.flip' must be true or false"),
        ("  aspect_ratios: [1, x]\n", "'train.aspect_ratios[1]' must be a number"),
    ],
)
def test_bad_value_fails_with_one_line_naming_the_key(tmp_path, body, message):
    path = write(tmp_path, "train:\n" + body)
    with pytest.raises(ParamsError) as err:
        load_section("train", TrainSpec, path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_section_and_broken_yaml_name_the_file(tmp_path):
    path = write(tmp_path, "evaluate: {}\n")
    with pytest.raises(ParamsError, match="section 'train' is missing"):
        load_section("train", TrainSpec, path)
    path = write(tmp_path, "train:\n  steps: [1\n")
    with pytest.raises(ParamsError, match=r"params.yaml:\d+: invalid YAML"):
        load_section("train", TrainSpec, path)


def test_repository_params_file_loads():
    from pathlib import Path

    from facedet.params.loader import read_params_file

    params = read_params_file(Path(__file__).parents[1] / "params.yaml")
    assert params["data"]["source"] == "embedded"
