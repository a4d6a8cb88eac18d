"""Outputs appear whole or not at all (issue 17): staging directory, rename into place, stale leftovers."""
import os
import subprocess

import pytest

from fusionlog.config import FusionLogError
from fusionlog.staging import check_replaceable, remove_stale, staged_dir, write_text_atomic


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_completed_stage_replaces_the_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    (out / "stale.txt").write_text("gone after the swap")
    with staged_dir(out, ("manifest.json",), "data.output_dir") as stage:
        assert stage.parent == tmp_path and stage.name.startswith(".out.staging-")
        (stage / "manifest.json").write_text("new")
    assert _snapshot(out) == {(out / "manifest.json").relative_to(out): b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old folder left


def test_a_failed_stage_leaves_the_old_output_byte_identical(tmp_path):
    out = tmp_path / "out"
    (out / "BGL").mkdir(parents=True)
    (out / "manifest.json").write_text("old")
    (out / "BGL" / "events.parquet").write_bytes(b"\x00\x01")
    before = _snapshot(out)
    with pytest.raises(RuntimeError, match="boom"):
        with staged_dir(out, ("manifest.json",), "data.output_dir") as stage:
            (stage / "manifest.json").write_text("half")
            raise RuntimeError("boom")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_directory_that_is_not_ours_is_never_replaced(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(FusionLogError, match="data.output_dir: .*home is not empty and holds none of manifest.json"):
        check_replaceable(tmp_path / "home", ("manifest.json",), "data.output_dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FusionLogError, match="exists and is not a directory"):
        check_replaceable(tmp_path / "file", ("manifest.json",), "data.output_dir")
    check_replaceable(tmp_path / "new", ("manifest.json",), "data.output_dir")  # absent or empty: fine


def test_leftovers_of_a_killed_run_are_removed_but_a_live_runs_are_not(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid
    gone = tmp_path / f".out.staging-{dead}-ab12"
    live = tmp_path / f".out.staging-{os.getpid()}-cd34"
    for folder in (gone, live):
        folder.mkdir()
    remove_stale(tmp_path / "out")
    assert not gone.exists() and live.exists()


def test_write_text_atomic(tmp_path):
    write_text_atomic(tmp_path / "s.json", "{}")
    assert (tmp_path / "s.json").read_text() == "{}" and len(list(tmp_path.iterdir())) == 1
