"""A stage validates its params.yaml section before any work, failing with one line naming the key; and
params.yaml lists every knob the code has, with the code's default and a comment, so `dvc params diff`
sees them all."""

import ast
import dataclasses
import functools
import inspect
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from facedet.params.loader import ParamsError, build, field_range, load_section, read_params_file
from facedet.params.recipes import AUTO, SYNTHETIC
from facedet.params.sections import SECTIONS, AugmentParams, DataParams, ExportParams, SyntheticParams

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


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
    params = read_params_file(PARAMS_YAML)
    assert params["data"]["source"] == "synthetic"
    for section, spec in SECTIONS.items():
        load_section(section, spec, PARAMS_YAML)


# ---------------------------------------------------------------------------------------------
# params.yaml lists every knob, with the code's default and a comment


def knobs(spec: type, key: str) -> dict[str, dataclasses.Field]:
    """Every leaf field under the dataclass `spec`, by dotted key (a mapping or list of user entries,
    such as the mirrors or the extra training sources, is one knob)."""
    found = {}
    hints = typing.get_type_hints(spec)
    for fld in dataclasses.fields(spec):
        dotted = f"{key}.{fld.name}"
        found |= knobs(hints[fld.name], dotted) if dataclasses.is_dataclass(hints[fld.name]) else {dotted: fld}
    return found


def yaml_knobs(node: yaml.Node, key: str, specs: dict[str, type]) -> dict[str, yaml.Node]:
    """The leaf key nodes of params.yaml, by dotted key, descending where the schema has a sub-section."""
    found = {}
    for key_node, value_node in node.value:
        dotted = f"{key}.{key_node.value}" if key else key_node.value
        if dotted in specs and isinstance(value_node, yaml.MappingNode):
            found |= yaml_knobs(value_node, dotted, specs)
        else:
            found[dotted] = key_node
    return found


def code_default(fld: dataclasses.Field):
    if fld.default_factory is not dataclasses.MISSING:
        return fld.default_factory()
    return fld.default


def sub_sections() -> dict[str, type]:
    """Every (sub-)section key -> its dataclass: 'data', 'data.synthetic', 'train.loss', ..."""
    found = dict(SECTIONS)
    todo = list(SECTIONS.items())
    while todo:
        key, spec = todo.pop()
        hints = typing.get_type_hints(spec)
        for fld in dataclasses.fields(spec):
            if dataclasses.is_dataclass(hints[fld.name]):
                found[f"{key}.{fld.name}"] = hints[fld.name]
                todo.append((f"{key}.{fld.name}", hints[fld.name]))
    return found


# the knobs without a code default (a recipe states them) and the mirror list (URLs: params.yaml's alone)
NO_CODE_DEFAULT = {"train.steps", "train.batch_size", "train.learning_rate", "train.warmup_steps",
                   "train.weight_decay", "data.widerface.mirrors"}


def test_params_yaml_lists_every_knob_of_the_code_and_nothing_else():
    code = {key: fld for section, spec in SECTIONS.items() for key, fld in knobs(spec, section).items()}
    listed = yaml_knobs(yaml.compose(PARAMS_YAML.read_text(encoding="utf-8")), "", sub_sections())
    assert sorted(set(code) - set(listed)) == [], "knobs params.yaml does not list (dvc params diff cannot see them)"
    assert sorted(set(listed) - set(code)) == [], "keys in params.yaml that no params dataclass reads"


def test_params_yaml_values_are_the_code_defaults():
    """So a knob left out of an experiment's params.yaml behaves as the repository's params.yaml says (an
    `auto` knob: as it says on the synthetic set, the default data; facedet.params.recipes)."""
    params = read_params_file(PARAMS_YAML)
    for section, spec in SECTIONS.items():
        for key, fld in knobs(spec, section).items():
            value = functools.reduce(lambda node, part: node[part], key.split(".")[1:], params[section])
            if key in NO_CODE_DEFAULT:
                assert code_default(fld) in (dataclasses.MISSING, []), f"{key} has a code default now: list it"
                continue
            default = code_default(fld)
            if value == AUTO:
                value = SYNTHETIC.values[key]
            assert value == (list(default) if isinstance(default, tuple) else default), key
            assert type(value) is type(default) or isinstance(default, (float, tuple)), f"{key}: {value!r}"


def test_every_knob_in_params_yaml_has_a_comment():
    lines = PARAMS_YAML.read_text(encoding="utf-8").splitlines()
    listed = yaml_knobs(yaml.compose(PARAMS_YAML.read_text(encoding="utf-8")), "", sub_sections())
    bare = [key for key, node in listed.items() if " #" not in lines[node.start_mark.line]]
    assert bare == [], "knobs without a one-line comment in params.yaml"


def test_the_model_layer_takes_the_params_values_from_its_caller():
    """params.yaml is the one home of the matching thresholds, ATSS's k and the loss settings: the model
    layer and the training input have no defaults of their own for them (train passes them), and the
    model layer imports no params section."""
    from facedet.model.losses import assign_targets, assign_targets_atss, detection_loss
    from facedet.model.ssd import build_detector
    from facedet.train.input import make_dataset
    from facedet.train.scale_crop import scale_crop

    for function, names in [(assign_targets, ("positive_iou", "negative_iou")), (assign_targets_atss, ("top_k",)),
                            (make_dataset, ("positive_iou", "negative_iou", "assignment", "atss_top_k")),
                            (detection_loss, ("config",))]:
        for name in names:
            assert inspect.signature(function).parameters[name].default is inspect.Parameter.empty, name
    assert inspect.signature(build_detector).parameters["download_timeout_s"].default is None  # no download
    assert inspect.signature(scale_crop).parameters["of"].default == AugmentParams.scale_crop_of
    model_dir = PARAMS_YAML.parent / "facedet/model"
    assert not [p.name for p in model_dir.glob("*.py") if "from facedet.params.sections import" in p.read_text()]


def test_the_params_module_imports_nothing_above_params():
    """`--help` and a params error stay fast: reading params.yaml starts no TensorFlow."""
    probe = ("import sys, facedet.params.sections; "
             "print(sorted(m for m in sys.modules if m.startswith('facedet.') or m in ('tensorflow', 'keras')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PARAMS_YAML.parent).stdout
    assert ast.literal_eval(loaded) == ["facedet.params", "facedet.params.loader", "facedet.params.recipes",
                                        "facedet.params.sections"]


# ---------------------------------------------------------------------------------------------
# renamed knobs: `data.source: embedded` and `data.embedded` are refused with one line giving the new names


def test_the_old_synthetic_names_are_refused_with_the_new_ones():
    with pytest.raises(ParamsError, match=r"^params.yaml: 'data.source: embedded' was renamed: write "
                                          r"'data.source: synthetic'$"):
        build(DataParams, {"source": "embedded"}, "data")
    with pytest.raises(ParamsError, match=r"^params.yaml: 'data.embedded' was renamed: write 'data.synthetic'$"):
        build(DataParams, {"embedded": {"seed": 3}}, "data")
    new = build(DataParams, {"source": "synthetic", "synthetic": {"seed": 3, "train_images": 5}}, "data")
    assert new.synthetic == SyntheticParams(seed=3, train_images=5)
    assert new.recorded_source == "embedded"  # what data/raw records: the same bytes as before the rename
    with pytest.raises(ParamsError, match=r"'data.source' must be one of \['synthetic', 'widerface', 'local'\]"):
        build(DataParams, {"source": "embeded"}, "data")


# ---------------------------------------------------------------------------------------------
# ranges hold however a params object is made


def test_export_params_check_their_ranges_when_made_in_code():
    for bad, message in [({"max_detections": 0}, "'export.max_detections' must be >= 1, got 0"),
                         ({"nms_iou": 1.5}, "'export.nms_iou' must be <= 1.0, got 1.5"),
                         ({"score_threshold": -0.1}, "'export.score_threshold' must be >= 0.0, got -0.1")]:
        with pytest.raises(ParamsError) as err:
            ExportParams(**bad)
        assert str(err.value) == message
