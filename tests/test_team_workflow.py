"""Working as a team, as docs/team.md shows it: one member runs the pipeline and pushes to a shared
DVC remote; a teammate clones, pulls, and has nothing to recompute; a stage run a teammate pushed
comes back from the run cache instead of running; a changed `train.*` param re-runs training and
what follows it, never the data stages; a recipe run before comes back from the run cache;
experiments are compared with `dvc exp show`, `dvc metrics diff` and `dvc plots diff`; the shipped
model is fetched by name. And the data stages give the same bytes on every run and with any number
of workers.

One small pipeline run (copy A) serves the whole module; the other steps reuse it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from facedet.params.recipes import resolve_auto

from pipeline_copy import ALL_STAGES, SMALL, commit, fresh_copy, run, set_params, stages_run

# The 12-step model of SMALL scores below the default 0.02 threshold, which would leave the PR curves
# empty; keep every detection so that there are curves to overlay.
PARAMS = {**SMALL, ("evaluate", "score_threshold"): 0.0, ("export", "score_threshold"): 0.0}
DATA_STAGES = {"fetch", "filter", "shard"}
TRAIN_AND_AFTER = ALL_STAGES - DATA_STAGES
HEADLINE = ("easy_ap", "medium_ap", "hard_ap", "coco_ap")  # reports/metrics.json: the shipped int8 file


@dataclass
class Team:
    a: Path  # ran the pipeline and pushed
    b: Path  # a teammate's clone of a, after `dvc pull`
    tmp: Path
    status_after_pull: dict
    repro_after_pull: str
    checkpoints_after_pull: bool


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Team:
    tmp = tmp_path_factory.mktemp("team")
    a = fresh_copy(tmp / "a", PARAMS)
    run(["dvc", "repro"], a)
    run(["dvc", "remote", "add", "-d", "team", str(tmp / "remote")], a)
    commit(a, "run the pipeline")
    run(["dvc", "push", "--run-cache"], a)

    b = tmp / "b"
    run(["git", "clone", "-q", str(a), str(b)], tmp)
    run(["dvc", "pull"], b)
    status = json.loads(run(["dvc", "status", "--json"], b))
    return Team(a, b, tmp, status, run(["dvc", "repro"], b), (b / "models/checkpoints").exists())


def lock_outs(repo: Path, stages: set[str]) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages for out in lock[stage]["outs"]}


@pytest.mark.slow
def test_data_stages_give_identical_bytes_on_another_run_with_other_worker_counts(team):
    workers = {("filter", "workers"): 1, ("shard", "workers"): 3}  # copy a ran with 2 and 2
    again = fresh_copy(team.tmp / "again", {**PARAMS, **workers})
    assert stages_run(run(["dvc", "repro", "shard"], again)) == DATA_STAGES
    first, second = lock_outs(team.a, DATA_STAGES), lock_outs(again, DATA_STAGES)
    assert {"data/raw", "data/interim", "data/tfrecords", "reports/filter.json"} <= set(first)
    assert second == first


@pytest.mark.slow
def test_a_teammate_pulls_and_has_nothing_to_recompute(team):
    assert team.status_after_pull == {}
    assert stages_run(team.repro_after_pull) == set() and "up to date" in team.repro_after_pull
    assert (team.b / "models/export/face_detector_int8.tflite").read_bytes() == \
        (team.a / "models/export/face_detector_int8.tflite").read_bytes()
    # checkpoints are local resume state: neither committed nor needed to be up to date
    assert run(["git", "ls-files", "models/checkpoints"], team.a).strip() == ""
    assert not team.checkpoints_after_pull


@pytest.mark.slow
def test_a_stage_run_a_teammate_pushed_is_restored_with_repro_pull(team):
    def clone(name: str) -> Path:
        repo = team.tmp / name
        run(["git", "clone", "-q", str(team.a), str(repo)], team.tmp)
        set_params(repo, {("shard", "train_shards"): 3})
        return repo

    pusher = clone("pusher")
    run(["dvc", "pull"], pusher)
    assert stages_run(run(["dvc", "repro", "shard"], pusher)) == {"shard"}
    run(["dvc", "push", "--run-cache"], pusher)

    other = clone("other")
    run(["dvc", "pull", "--run-cache"], other)
    log = run(["dvc", "repro", "--pull", "shard"], other)
    assert stages_run(log) == set() and "Stage 'shard' is cached - skipping run" in log
    assert lock_outs(other, {"shard"}) == lock_outs(pusher, {"shard"})


@dataclass
class Experiments:
    params: dict[str, dict[str, object]]  # name: what `dvc exp run -S` set, in the order they ran
    logs: dict[str, str]


@pytest.fixture(scope="module")
def experiments(team) -> Experiments:
    """In the teammate's clone: longer training, then a doubled learning rate, then the first again."""
    written = yaml.safe_load((team.b / "params.yaml").read_text())  # learning_rate: auto
    learning_rate = resolve_auto(written).params["train"]["learning_rate"]  # the synthetic set's
    params = {"steps-14": {"train.steps": 14},
              "lr-x2": {"train.steps": 14, "train.learning_rate": 2 * learning_rate},
              "steps-14-again": {"train.steps": 14, "train.learning_rate": written["train"]["learning_rate"]}}
    logs = {}
    for name, sets in params.items():
        args = [arg for key, value in sets.items() for arg in ("-S", f"{key}={value}")]
        logs[name] = run(["dvc", "exp", "run", "-n", name, *args], team.b)
    return Experiments(params, logs)


@pytest.mark.slow
def test_a_train_param_reruns_training_and_what_follows_but_no_data_stage(experiments):
    for name in ("steps-14", "lr-x2"):
        log = experiments.logs[name]
        assert stages_run(log) == TRAIN_AND_AFTER, name
        assert all(f"Stage '{stage}' didn't change, skipping" in log for stage in DATA_STAGES), name


@pytest.mark.slow
def test_a_recipe_run_before_comes_back_from_the_run_cache(team, experiments):
    log = experiments.logs["steps-14-again"]
    # Every stage but the model card comes back: their outputs are all in the DVC cache (dvc.yaml's
    # header; tests/test_dvc_yaml.py checks the rule). The card is never restored: DVC does not
    # run-cache a stage with a plain `cache: false` out, and it measures latency on this machine. Seconds.
    assert stages_run(log) == {"model_card"}
    assert all(f"Stage '{stage}' is cached - skipping run" in log for stage in TRAIN_AND_AFTER - {"model_card"})


def experiment_data(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json` as {experiment name: its data (params, metrics)}."""
    found = {}
    for baseline in json.loads(run(["dvc", "exp", "show", "--json"], repo)):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                found[rev["name"]] = rev["data"]
    return found


@pytest.mark.slow
def test_exp_show_lists_the_experiments_with_their_headline_metrics(team, experiments):
    shown = experiment_data(team.b)
    assert set(experiments.params) <= set(shown)
    for name, params in experiments.params.items():
        data = shown[name]
        train = data["params"]["params.yaml"]["data"]["train"]
        assert all(train[key.split(".")[1]] == value for key, value in params.items()), name
        assert list(data["metrics"]) == ["reports/metrics.json"], name  # the one metrics file
        shipped = data["metrics"]["reports/metrics.json"]["data"]
        for key in HEADLINE:
            assert 0.0 <= shipped[key] <= 1.0, (name, key)
        assert shipped["size_kb"] > 0 and shipped["latency_ms"] > 0, name
    again, first = (shown[name]["metrics"]["reports/metrics.json"]["data"] for name in ("steps-14-again", "steps-14"))
    assert again.pop("latency_ms") and first.pop("latency_ms")  # latency is re-measured
    assert again == first


@pytest.mark.slow
def test_metrics_diff_and_plots_diff_compare_the_experiments(team, experiments):
    diff = json.loads(run(["dvc", "metrics", "diff", "steps-14", "lr-x2", "--all", "--json"], team.b))
    assert set(diff) == {"reports/metrics.json"} and set(HEADLINE) <= set(diff["reports/metrics.json"])

    plots = json.loads(run(["dvc", "plots", "diff", "steps-14", "lr-x2", "--json"], team.b))
    assert not plots.get("errors"), plots["errors"]
    for plot_id, files in (("pr_wider_val", {"easy.csv", "medium.csv", "hard.csv"}),
                           ("pr_shipped_tflite", {"int8/pr/medium.csv", "float/pr/medium.csv"}),
                           ("training_loss", {"loss/total.tsv", "val/loss/total.tsv"})):
        (rendered,) = plots["data"][plot_id]
        points = rendered["content"]["data"]["values"]
        assert {p["rev"] for p in points} == {"steps-14", "lr-x2"}, plot_id
        drawn = {p["filename"] for p in points}
        if plot_id == "pr_shipped_tflite":  # the int8 model of a 14-step run may detect no face at all
            assert "float/pr/medium.csv" in drawn and drawn <= files, drawn
        else:
            assert drawn == files, plot_id


@pytest.mark.slow
def test_the_shipped_model_is_fetched_by_name_with_its_model_card(team, tmp_path):
    run(["git", "tag", "-a", "face-detector-run@v0.1.0", "-m", "face-detector-run 0.1.0"], team.a)
    run(["dvc", "artifacts", "get", str(team.a), "face-detector-run", "-o", "detector.tflite"], tmp_path)
    assert (tmp_path / "detector.tflite").read_bytes() == \
        (team.a / "models/export/face_detector_int8.tflite").read_bytes()
    assert "face_detector_int8.tflite" in run(["dvc", "ls", str(team.a), "models/export"], tmp_path)
    run(["dvc", "get", str(team.a), "models/model_card.json"], tmp_path)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["files"]["int8"]["sha256"] and card["data"]["dvc"]["found"]
    assert card["code"]["commit"]
