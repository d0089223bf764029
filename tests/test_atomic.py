"""A killed or failing stage leaves no half-written output: outputs appear whole or not at all."""

import pytest

from facedet.process.atomic import atomic_path, write_text_atomic


def test_file_appears_only_when_complete(tmp_path):
    final = tmp_path / "out" / "metrics.json"
    with atomic_path(final) as tmp:
        tmp.write_text("{}")
        assert not final.exists()
    assert final.read_text() == "{}"
    assert list(final.parent.iterdir()) == [final]


def test_failure_keeps_the_old_output_and_no_temp_files(tmp_path):
    final = tmp_path / "metrics.json"
    write_text_atomic(final, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_directory_output_replaces_the_previous_one(tmp_path):
    final = tmp_path / "shards"
    final.mkdir()
    (final / "stale").write_text("x")
    with atomic_path(final, is_dir=True) as tmp:
        (tmp / "a.record").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["a.record"]
