"""Ray Train wiring for the small model: a TorchTrainer over ``meta.train_loop`` (Ray's examples shape).

The Ray-specific lines are here only: worker rank/device, ``ray.train.report`` with a checkpoint
from rank 0 every epoch, resume from ``ray.train.get_checkpoint()``, and the run name, which comes
from the config and data (never a timestamp) so that rerunning the same command resumes the run.
Gradients are averaged by ``meta.all_reduce_grads`` over the process group TorchTrainer sets up;
the model is not wrapped in DDP, which cannot carry second-order meta-gradients (ENGINEERING.md).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import ray
import ray.train
import ray.train.torch
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from fusionlog import meta, progress
from fusionlog.artifact import save_artifact
from fusionlog.config import FusionLogConfig, to_dict
from fusionlog.dataset import TrainData

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
RUN_FILE = "run.json"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of registered checkpoints, in the run folder


@dataclass
class FitResult:
    name: str
    artifact_dir: Path
    best_epoch: int
    best_metrics: dict
    history: list[dict]
    stopped: str = ""  # why training ended (source-val patience, a perfect source-val, or the epoch budget)
    resumed_after: Optional[int] = None  # the epoch of the checkpoint this run resumed from; None = a fresh run


def run_identity(cfg: FusionLogConfig, data: TrainData) -> dict:
    """What makes two runs the same run. ``train.epochs`` is left out on purpose: raising it resumes
    the run and trains on; worker count and storage are left out as they don't change the model."""
    train = {k: v for k, v in asdict(cfg.train).items()
             if k not in ("epochs", "storage_path", "max_failures", "launcher", "placement")}
    return {"model": asdict(cfg.model), "meta": asdict(cfg.meta), "train": train, "seed": cfg.run.seed,
            "sources": list(data.source_names), "target": data.target_name, "data": data.fingerprint()}


def run_hash(cfg: FusionLogConfig, data: TrainData) -> str:
    blob = json.dumps(run_identity(cfg, data), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def run_name(cfg: FusionLogConfig, data: TrainData) -> str:
    """e.g. ``small-meta-HDFS-to-BGL-3f2a9c01b7de``: readable, and stable for the same config + data."""
    return f"small-{cfg.meta.method}-{'+'.join(data.source_names)}-to-{data.target_name}-{run_hash(cfg, data)}"


def check_run_dir(run_dir: Path, expected_hash: str) -> None:
    """Refuse, before training, to resume from checkpoints another config or data set wrote."""
    for marker in sorted(Path(run_dir).glob(f"*/{RUN_FILE}")):
        found = json.loads(marker.read_text())["run_hash"]
        if found != expected_hash:
            raise ValueError(f"{marker.parent} was written by run {found}, but this config and data give run "
                             f"{expected_hash}; use another run name or storage path, or the matching config")


def resume_point(run_dir: Path) -> tuple[Optional[str], list[str]]:
    """The checkpoint Ray Train will resume from (the latest its snapshot lists), and checkpoint folders on
    disk that the snapshot does not list.

    Rank 0 persists ``epoch_NNNN/`` inside ``ray.train.report``; the controller registers it (and
    rewrites the snapshot, then applies ``num_to_keep``) only when it next polls the workers. After
    a SIGKILL of ``fusionlog train-small`` on the demo config the disk held epoch_0000-0003 and the
    snapshot listed 0000-0001: the workers outlive the driver by a few seconds and keep reporting.
    Ray resumes from the snapshot's latest and writes the later epochs again, so unlisted folders
    are stale (and would never be pruned by ``num_to_keep``).
    """
    snapshot = Path(run_dir) / RAY_SNAPSHOT
    listed, latest = set(), None
    if snapshot.is_file():
        state = json.loads(snapshot.read_text())
        listed = {c["checkpoint_dir_name"] for c in state.get("checkpoint_results", [])}
        latest = (state.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
    on_disk = {m.parent.name for m in Path(run_dir).glob(f"*/{RUN_FILE}")}
    return latest, sorted(on_disk - listed)


def _read_state(checkpoint: ray.train.Checkpoint, expected_hash: str) -> dict:
    with checkpoint.as_directory() as d:
        found = json.loads((Path(d) / RUN_FILE).read_text())["run_hash"]
        if found != expected_hash:
            raise ValueError(f"checkpoint {checkpoint.path} is from run {found}, this run is {expected_hash}")
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker: resume if a checkpoint exists, then ``meta.train_loop`` with a Ray report."""
    cfg: FusionLogConfig = config["cfg"]
    data: TrainData = ray.get(config["data"])
    expected = config["run_hash"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    checkpoint = ray.train.get_checkpoint()
    resume = _read_state(checkpoint, expected) if checkpoint else None
    node = ray.get_runtime_context().get_node_id()  # in every rank's metrics: callbacks see where each rank ran

    def report(metrics: dict, state: dict) -> None:
        metrics = {**metrics, "node_id": node}
        if rank != 0:  # every rank calls report (it is a barrier); only rank 0 passes a checkpoint
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, Path(tmp) / STATE_FILE)
            (Path(tmp) / RUN_FILE).write_text(json.dumps({"run_hash": expected, "epoch": state["epoch"]}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"epoch_{state['epoch']:04d}")

    meta.train_loop(cfg, data, report, resume=resume, device=ray.train.torch.get_device(), rank=rank,
                    world_size=world)


class EpochRelay(ray.train.UserCallback):
    """Each epoch's rank-0 metrics from Ray Train's controller (an actor) to the driver, for its progress line."""

    def __init__(self, queue):
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        self.queue.put(metrics[0])


@contextmanager
def epoch_progress(bar: progress.Stage) -> Iterator[list]:
    """The callbacks that advance ``bar`` once per epoch; none (and no queue actor) when nobody draws progress."""
    if not progress.displayed():
        yield []
        return
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    stop = threading.Event()

    def drain() -> None:
        while True:
            try:
                m = queue.get(timeout=0.5)
            except Empty:
                if stop.is_set():
                    return
                continue
            bar.update(done=int(m["epoch"]) + 1, note=f"val F1 {m.get('val_f1', float('nan')):.3f}")

    thread = threading.Thread(target=drain, name="epoch-progress", daemon=True)
    thread.start()
    try:
        yield [EpochRelay(queue)]
    finally:
        stop.set()
        thread.join(timeout=10)
        queue.shutdown()


def fit_small(cfg: FusionLogConfig, data: TrainData, name: Optional[str] = None,
              artifact_dir: Optional[str | Path] = None, callbacks: Optional[list] = None,
              extras: Optional[Callable[[Path], None]] = None) -> FitResult:
    """Train (Ray Train, or in this process with ``train.launcher=local``) and write the model artifact.

    ``name`` defaults to ``run_name(cfg, data)``; the same name and storage resume the run.
    ``callbacks`` go to Ray Train's RunConfig (Ray Tune passes ``TuneReportCallback()`` here).
    ``extras(dir)`` adds files to the artifact before it is renamed into place (the drain3 state).
    """
    expected = run_hash(cfg, data)
    name = name or run_name(cfg, data)
    storage = Path(cfg.train.storage_path or Path(cfg.run.output_dir) / "ray_train").resolve()
    check_run_dir(storage / name, expected)
    resumed_after = _resume_point(cfg, storage / name, name)
    log.info("run %s in %s: %s launcher, %d workers, gpu=%s", name, storage, cfg.train.launcher, cfg.ray.num_workers,
             cfg.ray.use_gpu)
    with progress.stage("train", cfg.train.epochs, "epochs") as bar:
        if cfg.train.launcher == "local":
            state = _fit_local(cfg, data, storage / name, expected, bar)
        else:
            state = _fit_ray(cfg, data, name, storage, expected, callbacks, bar)
        bar.update(done=len(state["history"]), note=f"best epoch {state['best']['epoch']}, val F1 "
                                                     f"{state['best']['metrics']['val_f1']:.3f}")
    best = state["best"]
    out = Path(artifact_dir or Path(cfg.run.output_dir) / "models" / name)
    summary = {"run_name": name, "run_hash": expected, "threshold": best["metrics"]["threshold"],
               "best_epoch": best["epoch"], "best_metrics": best["metrics"], "history": state["history"],
               "epochs_run": state["epoch"] + 1, "stopped": state.get("stopped") or "not stopped",
               "data_counts": data.counts, "sources": data.source_names, "target": data.target_name}
    save_artifact(out, best["model"], to_dict(cfg), data.table, summary, data.source_events(), extras=extras)
    log.info("run %s: best epoch %d of %d (%s); %s; artifact in %s", name, best["epoch"], state["epoch"] + 1,
             {k: v for k, v in best["metrics"].items() if k.startswith("val_")}, summary["stopped"], out)
    return FitResult(name, out, best["epoch"], best["metrics"], state["history"], summary["stopped"], resumed_after)


def _resume_point(cfg: FusionLogConfig, run_dir: Path, name: str) -> Optional[int]:
    """The epoch a rerun resumes after (None: a fresh run), said in the log; Ray's stale checkpoints removed."""
    if cfg.train.launcher == "local":
        marker = run_dir / "local" / RUN_FILE
        resumed_after = json.loads(marker.read_text())["epoch"] if marker.is_file() else None
    else:
        latest, stale = resume_point(run_dir)
        for folder in stale:
            log.warning("run %s: removing checkpoint %s, written by a killed run but never registered by Ray", name,
                        folder)
            shutil.rmtree(run_dir / folder)
        marker = run_dir / (latest or "-") / RUN_FILE
        resumed_after = json.loads(marker.read_text())["epoch"] if latest and marker.is_file() else None
    if resumed_after is not None:
        log.info("resuming run %s from epoch %d", name, resumed_after + 1)
    return resumed_after


def _fit_ray(cfg: FusionLogConfig, data: TrainData, name: str, storage: Path, expected: str,
             callbacks: Optional[list], bar: progress.Stage) -> dict:
    """Ray Train's TorchTrainer over ``train_loop_per_worker``; the last checkpoint's state."""
    with epoch_progress(bar) as relay:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg, "data": ray.put(data), "run_hash": expected},
            scaling_config=ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                         placement_strategy=cfg.train.placement.upper()),
            run_config=RunConfig(name=name, storage_path=str(storage), callbacks=[*(callbacks or []), *relay],
                                 checkpoint_config=CheckpointConfig(num_to_keep=2),
                                 failure_config=FailureConfig(max_failures=cfg.train.max_failures)),
        )
        result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"run {name} finished without a checkpoint (train.epochs={cfg.train.epochs})")
    return _read_state(result.checkpoint, expected)


def _fit_local(cfg: FusionLogConfig, data: TrainData, run_dir: Path, expected: str, bar: progress.Stage) -> dict:
    """``meta.train_loop`` in this process: no worker start-up, for runs of one worker (an evaluation
    suite trains dozens of small models in a row). Checkpoints and resume as with Ray Train."""
    checkpoint = run_dir / "local"
    resume = None
    if (checkpoint / STATE_FILE).is_file():
        found = json.loads((checkpoint / RUN_FILE).read_text())["run_hash"]
        if found != expected:
            raise ValueError(f"{checkpoint} is from run {found}, this run is {expected}")
        resume = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    last: dict = {}

    def report(metrics: dict, state: dict) -> None:
        tmp = run_dir / "local.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp / STATE_FILE)
        (tmp / RUN_FILE).write_text(json.dumps({"run_hash": expected, "epoch": state["epoch"]}))
        if checkpoint.exists():
            shutil.rmtree(checkpoint)
        tmp.rename(checkpoint)
        last["state"] = state
        bar.update(done=int(metrics["epoch"]) + 1, note=f"val F1 {metrics.get('val_f1', float('nan')):.3f}")

    meta.train_loop(cfg, data, report, resume=resume)
    if "state" not in last:  # resumed a run that had already finished
        last["state"] = resume
    return last["state"]
