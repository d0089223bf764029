"""The data picks the recipe: a user points the pipeline at real photos (`data.source: local` or
`widerface`, or extra training faces) and every `auto` knob of params.yaml takes the real-faces value,
with nothing else to set; the default synthetic run trains exactly as it did before `auto` existed; a
value the user writes (`dvc exp run -S key=value`) wins; each stage says which recipe it took and why."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` does to params.yaml

from facedet.params.loader import ParamsError, check_params_unchanged, exit_on_bad_params, load_section
from facedet.params.recipes import AUTO, REAL_PHOTOS, SYNTHETIC
from facedet.params.sections import SECTIONS

REPO = Path(__file__).resolve().parents[1]
# The README's real-faces command: the data, nothing else.
REAL_FACES_COMMAND = ["data.source=local", "data.local.path=../shared/realfaces/widerface",
                      "+data.extra_train.facemask={format:voc,path:../shared/realfaces/facemask_voc}"]
# What params.yaml said before `auto`: the default run's values, which it must keep.
BEFORE_AUTO = {"filter.min_face_px": 6, "model.preset": "ssd_mobilenet_v2_256", "train.steps": 2000,
               "train.learning_rate": 0.004, "train.positive_iou": 0.5, "train.negative_iou": 0.4,
               "train.assignment": "iou", "train.loss.classification": "hard_negative_mining",
               "train.loss.box_iou": "none", "train.augment.scale_crop": 0.0, "evaluate.input_size": 0,
               "export.max_detections": 100, "export.input_sizes": []}


def params_file(tmp_path: Path, *overrides: str) -> Path:
    """The repository's params.yaml in `tmp_path`, after `dvc exp run -S <override> ...`."""
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    if overrides:
        apply_overrides(path, list(overrides))
    return path


def sections(path: Path) -> dict[str, object]:
    """Every section as its stage loads it."""
    return {name: load_section(name, spec, path) for name, spec in SECTIONS.items()}


def knob(loaded: dict[str, object], key: str) -> object:
    section, *rest = key.split(".")
    value = functools.reduce(getattr, rest, loaded[section])
    return list(value) if isinstance(value, tuple) else value


def test_the_default_synthetic_run_trains_exactly_as_before(tmp_path):
    written = params_file(tmp_path)
    explicit = yaml.safe_load(written.read_text())
    for key, value in BEFORE_AUTO.items():
        *parents, leaf = key.split(".")
        node = functools.reduce(dict.__getitem__, parents, explicit)
        assert node[leaf] == AUTO, key
        node[leaf] = value
    before = tmp_path / "before" / "params.yaml"
    before.parent.mkdir()
    before.write_text(yaml.safe_dump(explicit, sort_keys=False))
    assert sections(written) == sections(before)
    assert SYNTHETIC.values == BEFORE_AUTO


@pytest.mark.parametrize("overrides", [pytest.param(REAL_FACES_COMMAND, id="the-readme-command"),
                                       pytest.param(["data.source=local"], id="local"),
                                       pytest.param(["data.source=widerface"], id="widerface"),
                                       pytest.param(REAL_FACES_COMMAND[2:], id="extra-train-faces-alone")])
def test_real_photos_get_the_real_faces_recipe(tmp_path, overrides):
    loaded = sections(params_file(tmp_path, *overrides))
    assert {key: knob(loaded, key) for key in REAL_PHOTOS.values} == dict(REAL_PHOTOS.values)
    assert loaded["model"].preset == "ssd_mobilenet_v2_native_256" and loaded["train"].augment.scale_crop == 1.0


def test_a_value_you_set_beats_auto(tmp_path):
    loaded = sections(params_file(tmp_path, *REAL_FACES_COMMAND, "train.steps=300", "export.input_sizes=[640]"))
    assert loaded["train"].steps == 300 and loaded["export"].input_sizes == (640,)
    assert loaded["train"].learning_rate == REAL_PHOTOS.values["train.learning_rate"]  # the others: still auto
    loaded = sections(params_file(tmp_path, "train.learning_rate=0.002"))
    assert loaded["train"].learning_rate == 0.002 and loaded["train"].steps == BEFORE_AUTO["train.steps"]


def test_the_stage_says_which_recipe_it_took_and_why(tmp_path, capsys):
    load_section("filter", SECTIONS["filter"], params_file(tmp_path, "data.source=local"))
    assert capsys.readouterr().out == "recipe: real photos (data.source=local): filter.min_face_px=2\n"
    load_section("filter", SECTIONS["filter"], params_file(tmp_path, *REAL_FACES_COMMAND[2:]))
    assert capsys.readouterr().out.startswith("recipe: real photos (data.extra_train: facemask): ")
    load_section("shard", SECTIONS["shard"], params_file(tmp_path))
    assert capsys.readouterr().out == ""  # no `auto` knob: nothing to say
    load_section("filter", SECTIONS["filter"], params_file(tmp_path, "filter.min_face_px=4"))
    assert capsys.readouterr().out == ""


def test_the_filter_stage_prints_the_recipe_before_its_work(tmp_path):
    params_file(tmp_path, "data.source=local")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "stages.filter"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1 and "filter: error: " in run.stderr  # no data/raw here
    assert run.stdout.splitlines()[0] == "recipe: real photos (data.source=local): filter.min_face_px=2"


def test_auto_on_a_knob_no_recipe_sets_is_a_one_line_error(tmp_path):
    with pytest.raises(ParamsError) as err:
        load_section("train", SECTIONS["train"], params_file(tmp_path, "train.batch_size=auto"))
    assert str(err.value) == ("params.yaml: 'train.batch_size' cannot be auto: no recipe sets it (the knobs that "
                              "can: facedet/params/recipes.py)")
    with pytest.raises(ParamsError, match=r"^params.yaml: 'train.steps' must be an integer, got 'atuo'$"):
        load_section("train", SECTIONS["train"], params_file(tmp_path, "train.steps=atuo"))


def test_a_data_change_while_the_stage_ran_is_caught_like_any_params_change(tmp_path):
    """dvc.lock would record the new data.source for a stage whose `auto` knobs took the old one's recipe."""
    path = params_file(tmp_path)
    with pytest.raises(SystemExit) as stop, exit_on_bad_params("filter"):
        load_section("filter", SECTIONS["filter"], path)
        apply_overrides(path, ["data.source=local"])
    assert "changed while the stage ran (data.source: 'synthetic' when the stage started, 'local' now)" in \
        str(stop.value)
    apply_overrides(path, ["data.source=synthetic"])
    check_params_unchanged()


def test_params_yaml_gives_both_values_of_each_auto_knob():
    lines = {line.split(":")[0].strip(): line for line in (REPO / "params.yaml").read_text().splitlines()
             if ": auto " in line}

    def shown(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()

    for key, synthetic in SYNTHETIC.values.items():
        line = lines[key.rsplit(".", 1)[1]]
        assert f"# auto: {shown(synthetic)} on the synthetic set, {shown(REAL_PHOTOS.values[key])} on real photos" \
            in line, key
    assert len(lines) == len(SYNTHETIC.values)
