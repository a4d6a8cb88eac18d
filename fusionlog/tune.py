"""Ray Tune over the small model: learning rates, hidden size, beta, gamma, inner steps (issue 6).

Train V2 shape (ENGINEERING.md): the Tuner's trainable is a driver function that runs
``train.fit_small`` with ``TuneReportCallback()``, so every epoch's rank-0 metrics reach Tune and
ASHA can stop weak trials early. The objective is the SOURCE-validation metric that also picks the
best epoch (``val_<train.select_metric>``); the target is loaded without labels, once, and shared
by every trial through the object store (``tune.with_parameters``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from fusionlog.config import FusionLogConfig, TuneConfig
from fusionlog.dataset import TrainData, load_train_data
from fusionlog.train import fit_small, run_hash

log = logging.getLogger(__name__)

DRIVER_MEMORY = 256 * 2**20  # bytes a trial's driver reserves: its copy of TrainData, no CPU


@dataclass
class TuneResult:
    best: dict  # the winning values as a nested override mapping, e.g. {"meta": {"beta": 0.2}, "model": {...}}
    metric: str  # e.g. "val_f1", on source-val
    score: float  # the best trial's best epoch on that metric
    trials: int
    stopped_early: int  # trials ASHA stopped before train.epochs
    path: Path  # the Tune experiment directory


def search_space(tc: TuneConfig) -> dict:
    """Tune's param_space, keyed by the dotted config key each value overrides; empty lists stay fixed."""
    dims = {"meta.meta_lr": (tc.meta_lr, tune.loguniform), "meta.inner_lr": (tc.inner_lr, tune.loguniform),
            "meta.beta": (tc.beta, tune.loguniform), "meta.gamma": (tc.gamma, tune.uniform),
            "model.hidden": (tc.hidden, None), "meta.inner_steps": (tc.inner_steps, None)}
    space = {key: sample(*values) if sample else tune.choice(values) for key, (values, sample) in dims.items()
             if values}
    if not space:
        raise ValueError("tune: every search dimension (meta_lr, inner_lr, beta, gamma, hidden, inner_steps) is "
                         "empty; give at least one range or list of choices")
    return space


def apply_params(cfg: FusionLogConfig, params: dict) -> FusionLogConfig:
    """A copy of ``cfg`` with a trial's ``{"meta.beta": 0.2, ...}`` set, each cast to the field's type."""
    out = copy.deepcopy(cfg)
    for key, value in params.items():
        section, name = key.split(".")
        node = getattr(out, section)
        setattr(node, name, type(getattr(node, name))(value))
    return out


def nested(params: dict) -> dict:
    """``{"meta.beta": 0.2}`` -> ``{"meta": {"beta": 0.2}}``: the shape of a config YAML."""
    out: dict = {}
    for key, value in sorted(params.items()):
        section, name = key.split(".")
        out.setdefault(section, {})[name] = value.item() if hasattr(value, "item") else value
    return out


def experiment_name(cfg: FusionLogConfig, tc: TuneConfig, data: TrainData) -> str:
    """From the run's identity, the epochs and the search space: the same command restores the same experiment."""
    blob = json.dumps({"run": run_hash(cfg, data), "epochs": cfg.train.epochs, "tune": asdict(tc)},
                      sort_keys=True).encode()
    return f"tune-small-{hashlib.sha256(blob).hexdigest()[:12]}"


def _trial(params: dict, cfg: FusionLogConfig, data: TrainData) -> None:
    """One trial's driver: fit_small on the sampled config; Train reports every epoch to Tune."""
    trial_cfg = apply_params(cfg, params)
    artifact = Path(tune.get_context().get_trial_dir()) / "artifact"
    fit_small(trial_cfg, data, artifact_dir=artifact, callbacks=[TuneReportCallback()])


def tune_small(cfg: FusionLogConfig, tc: TuneConfig) -> TuneResult:
    """Search ``tc``'s space with ASHA on source-val; rerunning the same command restores the experiment."""
    if tc.grace_period > cfg.train.epochs:
        raise ValueError(f"tune.grace_period: {tc.grace_period} exceeds train.epochs: {cfg.train.epochs}; ASHA "
                         "could never stop a trial")
    space = search_space(tc)
    metric = f"val_{cfg.train.select_metric}"
    data = load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction,
                           cfg.run.seed)
    storage = (Path(cfg.run.output_dir) / "tune").resolve()
    name = experiment_name(cfg, tc, data)
    # The driver only waits on the TorchTrainer, whose workers hold the CPUs: Tune's default 1-CPU driver
    # would leave a 2-CPU machine one CPU short of 2 Ray Train workers, and the trial would wait forever.
    # So it reserves no CPU, only memory for its copy of the data (Tune refuses an empty request);
    # max_concurrent_trials bounds the trials instead (Ray's Train + Tune guide).
    trainable = tune.with_resources(tune.with_parameters(_trial, cfg=cfg, data=data),
                                    {"cpu": 0, "memory": DRIVER_MEMORY})
    if tune.Tuner.can_restore(storage / name):
        log.info("restoring Tune experiment %s", storage / name)
        tuner = tune.Tuner.restore(str(storage / name), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(
                metric=metric, mode="max", num_samples=tc.num_samples,
                max_concurrent_trials=tc.max_concurrent_trials or None,
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=cfg.train.epochs,
                                        grace_period=tc.grace_period, reduction_factor=tc.reduction_factor)),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=1 if cfg.run.progress else 0))
    grid = tuner.fit()
    if grid.num_errors == len(grid):
        raise RuntimeError(f"all {len(grid)} Tune trials in {storage / name} failed; first error: {grid.errors[0]}")
    if grid.num_errors:
        log.warning("%d of %d Tune trials failed; the best of the others is kept", grid.num_errors, len(grid))
    best = grid.get_best_result(metric=metric, mode="max", scope="all")
    score = float(best.metrics_dataframe[metric].max())
    stopped = sum(r.error is None and r.metrics.get("training_iteration", 0) < cfg.train.epochs for r in grid)
    log.info("Tune %s: best %s=%.4f with %s (%d trials, %d stopped early)", name, metric, score, best.config,
             len(grid), stopped)
    return TuneResult(nested(best.config), metric, score, len(grid), stopped, storage / name)


def write_best(result: TuneResult, path: str | Path) -> Path:
    """The winning values as a YAML overrides file, for ``fusionlog train-small --config base.yaml --config it``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Ray Tune best of {result.trials} trials ({result.stopped_early} stopped early by ASHA): "
              f"source-val {result.metric}={result.score:.4f}\n# experiment: {result.path}\n"
              "# use: fusionlog train-small --config <your config>.yaml --config this-file.yaml\n")
    path.write_text(header + yaml.safe_dump(result.best, sort_keys=True))
    return path
