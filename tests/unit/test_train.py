"""Ray Train wiring without a cluster: which checkpoint a rerun resumes from, and which folders are stale."""
import json

from fusionlog.train import RAY_SNAPSHOT, RUN_FILE, resume_point


def _checkpoint(run_dir, epoch):
    folder = run_dir / f"epoch_{epoch:04d}"
    folder.mkdir(parents=True)
    (folder / RUN_FILE).write_text(json.dumps({"run_hash": "h", "epoch": epoch}))


def _snapshot(run_dir, listed, latest):
    state = {"checkpoint_results": [{"checkpoint_dir_name": n, "metrics": {}} for n in listed],
             "latest_checkpoint_result": {"checkpoint_dir_name": latest, "metrics": {}} if latest else None}
    (run_dir / RAY_SNAPSHOT).write_text(json.dumps(state))


def test_folders_the_snapshot_does_not_list_are_stale(tmp_path):
    """What a SIGKILL of `fusionlog train-small` left (measured on the demo config): epoch_0000..0003 on disk,
    Ray's snapshot listing epoch_0000 and epoch_0001 - rank 0 persists a checkpoint inside ray.train.report,
    and the workers kept training for a few seconds after the driver died, before the controller registered it."""
    for epoch in range(4):
        _checkpoint(tmp_path, epoch)
    _snapshot(tmp_path, ["epoch_0000", "epoch_0001"], "epoch_0001")
    assert resume_point(tmp_path) == ("epoch_0001", ["epoch_0002", "epoch_0003"])


def test_a_fresh_run_and_a_run_killed_before_its_first_registration(tmp_path):
    assert resume_point(tmp_path / "none") == (None, [])
    _checkpoint(tmp_path, 0)
    assert resume_point(tmp_path) == (None, ["epoch_0000"])  # Ray starts afresh and writes epoch_0000 again
