"""Domain-adversarial meta-learning of the small model (FusionLog §III-C, Algorithm 1 lines 7-17).

One meta step (Algorithm 1):
  line 10  sample meta-tasks MT_i = (support, query), each with labelled source + unlabelled target
  line 11  f_d: ascend the domain distinction on the supports            (rate λ, ``domain_lr``)
  line 12  f_ω: descend L_c on the source supports                      (rate κ, ``anomaly_lr``)
  line 14  f_e: θ_e^i = θ_e − δ∇L_MT(support), L = γ·L_c − β·L_ad       (rate δ, ``inner_lr``)
  line 16  f_e: θ_e ← θ_e − α∇_θe Σ_i L_MT(query; θ_e^i)                 (rate α, ``meta_lr``)

Sign convention. Read literally, the paper has f_d *ascend* L_ad and f_e *minimise* −β·L_ad, which
with one L_ad makes both players push the same way. We follow its stated intent (f_d "maximises
the distinction", f_e is pushed to domain-invariant features): L_ad is the domain BCE with logits,
f_d's ascent is on the domain log-likelihood (= descent on L_ad), and f_e descends γ·L_c − β·L_ad.

The core runs without Ray: ``train_loop(cfg, data, report)``; fusionlog/train.py wraps it.
Gradients are averaged across workers by hand (``all_reduce_grads``), because DDP cannot carry
second-order meta-gradients (ENGINEERING.md).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.func import functional_call

from fusionlog.config import FusionLogConfig, MetaConfig, TrainConfig
from fusionlog.dataset import TrainData, count_features, pad_batch, unique_sequences, windows
from fusionlog.metrics import auroc, best_f1_threshold, precision_recall_f1
from fusionlog.model import SmallModel

log = logging.getLogger(__name__)

Params = dict[str, torch.Tensor]
Report = Callable[[dict, dict], None]  # (metrics, checkpoint state); ray.train.report under Ray


# ----------------------------------------------------------------------------- meta-task sampling


@dataclass
class TaskRows:
    """Row indices of one meta-task: source rows index source-train, target rows the target set."""

    support_source: np.ndarray
    query_source: np.ndarray
    support_target: np.ndarray
    query_target: np.ndarray


@dataclass
class TaskSet:
    """Source sequences then target sequences in one padded batch (one GRU call for both domains)."""

    idx: torch.Tensor  # (B, T) event indices
    lengths: torch.Tensor  # (B,)
    labels: torch.Tensor  # (n_source,) float 0/1; target labels do not exist here
    n_source: int
    counts: Optional[torch.Tensor] = None  # (B, E) log1p event counts, for the count branch


@dataclass
class MetaTask:
    support: TaskSet
    query: TaskSet


def _split_draw(rng: np.random.Generator, pool: np.ndarray, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint draws of n_a and n_b from pool; both shrink in proportion when the pool is too small."""
    perm = pool[rng.permutation(len(pool))]
    if n_a + n_b > len(perm):
        n_a = min(len(perm), max(1, round(len(perm) * n_a / (n_a + n_b))))
        n_b = len(perm) - n_a
    return perm[:n_a], perm[n_a:n_a + n_b]


def sample_source_rows(rng: np.random.Generator, labels: np.ndarray, n_a: int,
                       n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified disjoint source draws: each keeps the anomaly rate, with at least one anomaly.

    Ours: anomalies are rare (HDFS ~3%), and a support set without one has no L_c signal.
    """
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rate = len(pos) / len(labels)
    pos_a, pos_b = _split_draw(rng, pos, max(1, round(n_a * rate)), max(1, round(n_b * rate)) if n_b else 0)
    neg_a, neg_b = _split_draw(rng, neg, n_a - len(pos_a), max(0, n_b - len(pos_b)))
    return np.sort(np.concatenate([pos_a, neg_a])), np.sort(np.concatenate([pos_b, neg_b]))


def sample_task_rows(rng: np.random.Generator, source_labels: np.ndarray, n_target: int,
                     cfg: MetaConfig) -> TaskRows:
    """MT_i = (M^sup, M^que), Algorithm 1 line 10; the target side is drawn without labels."""
    sup_s, que_s = sample_source_rows(rng, source_labels, cfg.support_size, cfg.query_size)
    sup_t, que_t = _split_draw(rng, np.arange(n_target), cfg.support_size, cfg.query_size)
    if len(que_t) == 0:  # a one-sequence target set: support and query share it
        que_t = sup_t
    return TaskRows(sup_s, que_s, np.sort(sup_t), np.sort(que_t))


def batch_tensors(model: SmallModel, sequences: list[np.ndarray], max_len: int, device: torch.device | str,
                  rng: Optional[np.random.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], int]:
    """(idx, lengths, counts or None, truncated) for a batch of event-table sequences (see ``dataset.pad_batch``)."""
    idx, lengths, truncated = pad_batch(sequences, model.pad_index, max_len, rng)
    counts = (torch.from_numpy(count_features(sequences, model.n_events)).to(device) if model.uses_counts else None)
    return torch.from_numpy(idx).to(device), torch.from_numpy(lengths).to(device), counts, truncated


def make_task_set(model: SmallModel, source: list[np.ndarray], labels: np.ndarray, target: list[np.ndarray],
                  max_len: int, device: torch.device | str,
                  rng: Optional[np.random.Generator] = None) -> tuple[TaskSet, int]:
    """Padded tensors for source + target sequences, and how many were longer than max_len."""
    idx, lengths, counts, truncated = batch_tensors(model, [*source, *target], max_len, device, rng)
    return TaskSet(idx, lengths, torch.as_tensor(labels, dtype=torch.float32, device=device), len(source),
                   counts), truncated


def make_task(model: SmallModel, rows: TaskRows, data: TrainData, max_len: int, device: torch.device | str,
              rng: Optional[np.random.Generator] = None) -> tuple[MetaTask, int]:
    src, lab, tgt = data.source_train, data.source_train_labels, data.target
    sup, t1 = make_task_set(model, [src[i] for i in rows.support_source], lab[rows.support_source],
                            [tgt[i] for i in rows.support_target], max_len, device, rng)
    que, t2 = make_task_set(model, [src[i] for i in rows.query_source], lab[rows.query_source],
                            [tgt[i] for i in rows.query_target], max_len, device, rng)
    return MetaTask(sup, que), t1 + t2


# ----------------------------------------------------------------------------- losses


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """L_c: binary cross-entropy of the anomaly head on source sequences (§III-C); pos_weight is ours."""
    weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)


def adversarial_loss(domain_logits: torch.Tensor, n_source: int) -> torch.Tensor:
    """L_ad: BCE with logits of the domain head; source rows are domain 0, target rows domain 1."""
    domains = torch.zeros_like(domain_logits)
    domains[n_source:] = 1.0
    return F.binary_cross_entropy_with_logits(domain_logits, domains)


def extract(model: SmallModel, params: Params, batch: TaskSet) -> torch.Tensor:
    """f_e under the given (possibly adapted) parameters."""
    return functional_call(model.extractor, params, model.inputs(batch.idx, batch.lengths, batch.counts))


def task_objective(model: SmallModel, params: Params, batch: TaskSet, cfg: MetaConfig,
                   pos_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_MT = γ·L_c(source) − β·L_ad(source + target) (§III-C), with f_ω and f_d held as they are."""
    z = extract(model, params, batch)
    lc = classification_loss(model.anomaly_head(z[:batch.n_source]), batch.labels, pos_weight)
    lad = adversarial_loss(model.domain_head(z), batch.n_source)
    return cfg.gamma * lc - cfg.beta * lad, lc, lad


# ----------------------------------------------------------------------------- updates


def all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Average .grad over Ray Train workers (no-op in one process); DDP can't do second order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()


def broadcast_params(model: SmallModel) -> None:
    """Start every worker from rank 0's weights (no-op in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def _head_step(head: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=False)
    loss.backward()
    all_reduce_grads(list(head.parameters()))
    opt.step()
    return float(loss.detach())


def domain_head_step(model: SmallModel, opt: torch.optim.Optimizer, zs: list[torch.Tensor],
                     tasks: list[MetaTask]) -> float:
    """Algorithm 1 line 11: f_d ascends the distinction Σ_i −L_ad(M_i^sup), i.e. descends L_ad."""
    loss = sum(adversarial_loss(model.domain_head(z), t.support.n_source) for z, t in zip(zs, tasks))
    return _head_step(model.domain_head, opt, loss)


def anomaly_head_step(model: SmallModel, opt: torch.optim.Optimizer, zs: list[torch.Tensor],
                      tasks: list[MetaTask], pos_weight: float) -> float:
    """Algorithm 1 line 12: f_ω descends Σ_i L_c(M_i^sup)."""
    loss = sum(classification_loss(model.anomaly_head(z[:t.support.n_source]), t.support.labels, pos_weight)
               for z, t in zip(zs, tasks))
    return _head_step(model.anomaly_head, opt, loss)


def inner_adapt(model: SmallModel, params: Params, support: TaskSet, cfg: MetaConfig, pos_weight: float,
                second_order: bool) -> Params:
    """Algorithm 1 line 14: θ_e^i = θ_e − δ∇L_MT(M_i^sup), ``inner_steps`` times.

    Second order keeps the graph (create_graph) so the meta-gradient flows through the step;
    first order detaches the adapted parameters (FOMAML).
    """
    for _ in range(cfg.inner_steps):
        loss, _, _ = task_objective(model, params, support, cfg, pos_weight)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=second_order)
        params = {n: p - cfg.inner_lr * g for (n, p), g in zip(params.items(), grads)}
        if not second_order:
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
    return params


def meta_gradients(model: SmallModel, tasks: list[MetaTask], cfg: MetaConfig,
                   pos_weight: float) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Algorithm 1 lines 13-16: ∇_θe Σ_i L_MT(M_i^que; θ_e^i), exact or first-order.

    cuDNN's GRU has no double backward, so it is switched off for the second-order path.
    """
    theta = dict(model.extractor.named_parameters())
    total = [torch.zeros_like(p) for p in theta.values()]
    sums = {"objective": 0.0, "loss_c": 0.0, "loss_ad": 0.0}
    cudnn_off = torch.backends.cudnn.flags(enabled=False) if cfg.second_order else contextlib.nullcontext()
    with cudnn_off:
        for task in tasks:
            start = theta if cfg.second_order else {n: p.detach().requires_grad_() for n, p in theta.items()}
            adapted = inner_adapt(model, start, task.support, cfg, pos_weight, cfg.second_order)
            objective, lc, lad = task_objective(model, adapted, task.query, cfg, pos_weight)
            wrt = list(theta.values()) if cfg.second_order else list(adapted.values())
            for acc, g in zip(total, torch.autograd.grad(objective, wrt)):
                acc += g
            sums["objective"] += float(objective.detach())
            sums["loss_c"] += float(lc.detach())
            sums["loss_ad"] += float(lad.detach())
    return total, {k: v / len(tasks) for k, v in sums.items()}


def outer_step(model: SmallModel, opt: torch.optim.Optimizer, grads: list[torch.Tensor]) -> None:
    """Algorithm 1 line 16: the meta update of θ_e (Adam, rate α)."""
    params = list(model.extractor.parameters())
    for p, g in zip(params, grads):
        p.grad = g.clone()
    all_reduce_grads(params)
    opt.step()


def meta_step(model: SmallModel, opts: dict[str, torch.optim.Optimizer], tasks: list[MetaTask],
              cfg: MetaConfig, pos_weight: float) -> dict[str, float]:
    """One pass of Algorithm 1 lines 11-16 over a batch of meta-tasks."""
    with torch.no_grad():
        zs = [model.features(t.support.idx, t.support.lengths, t.support.counts) for t in tasks]
    domain = domain_head_step(model, opts["domain"], zs, tasks)
    anomaly = anomaly_head_step(model, opts["anomaly"], zs, tasks, pos_weight)
    grads, query = meta_gradients(model, tasks, cfg, pos_weight)
    outer_step(model, opts["extractor"], grads)
    return {"domain_head_loss": domain, "anomaly_head_loss": anomaly, **query}


def source_only_step(model: SmallModel, opts: dict[str, torch.optim.Optimizer], batch: TaskSet,
                     pos_weight: float) -> dict[str, float]:
    """The baseline: plain supervised BCE on source sequences, f_e and f_ω together (ours)."""
    for opt in (opts["extractor"], opts["anomaly"]):
        opt.zero_grad(set_to_none=False)
    logits, _ = model(batch.idx, batch.lengths, batch.counts)
    loss = classification_loss(logits, batch.labels, pos_weight)
    loss.backward()
    all_reduce_grads([*model.extractor.parameters(), *model.anomaly_head.parameters()])
    opts["extractor"].step()
    opts["anomaly"].step()
    return {"objective": float(loss.detach()), "loss_c": float(loss.detach())}


# ----------------------------------------------------------------------------- inference and validation


def predict_proba(model: SmallModel, sequences: list[np.ndarray], batch_size: int, max_len: int,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, int]:
    """Anomaly probabilities (sigmoid of f_omega), and how many sequences were longer than max_len.

    Each distinct sequence is scored once: logs repeat (20,000 HDFS blocks hold 2,242 distinct
    event sequences, 18,000 BGL windows 5,903), and identical inputs get identical scores.
    """
    distinct, inverse = unique_sequences(sequences)
    probs = predict_distinct(model, distinct, batch_size, max_len, device)
    return probs[inverse], int(sum(len(s) > max_len for s in sequences))


@torch.inference_mode()
def predict_distinct(model: SmallModel, sequences: list[np.ndarray], batch_size: int, max_len: int,
                     device: torch.device | str = "cpu") -> np.ndarray:
    """``predict_proba`` without its deduplication: every sequence goes through the model.

    A longer sequence is scored whole: the max over its windows of max_len (half overlap), each
    window with the counts of the whole sequence. Windows are batched by length to keep padding
    small; output order is the input order.
    """
    was_training = model.training
    model.eval()
    parts, owner = windows(sequences, max_len)
    probs = np.zeros(len(sequences), dtype=np.float64)
    order = np.argsort([len(s) for s in parts], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        idx, lengths, _ = pad_batch([parts[i] for i in rows], model.pad_index, max_len)
        counts = (torch.from_numpy(count_features([sequences[i] for i in owner[rows]], model.n_events)).to(device)
                  if model.uses_counts else None)
        logits, _ = model(torch.from_numpy(idx).to(device), torch.from_numpy(lengths).to(device), counts)
        np.maximum.at(probs, owner[rows], torch.sigmoid(logits).double().cpu().numpy())
    model.train(was_training)
    return probs


def validate_source(model: SmallModel, data: TrainData, batch_size: int, max_len: int,
                    device: torch.device | str) -> dict[str, float]:
    """F1 (at the threshold chosen here) and AUROC on held-out SOURCE sequences only."""
    probs, truncated = predict_proba(model, data.source_val, batch_size, max_len, device)
    labels = data.source_val_labels
    threshold = best_f1_threshold(labels, probs)
    scores = precision_recall_f1(labels, (probs >= threshold).astype(np.int64))
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    return {"val_f1": scores["f1"], "val_loss": loss, "val_precision": scores["precision"], "val_recall": scores["recall"],
            "val_auroc": auroc(labels, probs), "threshold": threshold, "val_truncated": truncated}


# ----------------------------------------------------------------------------- training loop


def make_optimizers(model: SmallModel, cfg: MetaConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam everywhere (fixed by the paper), one per module so each has its own rate α, κ, λ."""
    return {"extractor": torch.optim.Adam(model.extractor.parameters(), lr=cfg.meta_lr),
            "anomaly": torch.optim.Adam(model.anomaly_head.parameters(), lr=cfg.anomaly_lr),
            "domain": torch.optim.Adam(model.domain_head.parameters(), lr=cfg.domain_lr)}


def resolve_pos_weight(pos_weight: float, labels: np.ndarray) -> float:
    """0 means n_normal / n_anomalous of source-train; any other value is used as given."""
    if pos_weight > 0:
        return float(pos_weight)
    return float((labels == 0).sum() / max(1, (labels == 1).sum()))


def steps_per_epoch(tcfg: TrainConfig, m: MetaConfig, n_source_train: int, world_size: int) -> int:
    """Configured, or enough steps (over all workers) to draw each source-train sequence about once."""
    if tcfg.steps_per_epoch:
        return tcfg.steps_per_epoch
    per_step = m.tasks_per_step * (m.support_size + m.query_size) if m.method == "meta" else m.batch_size
    return max(1, math.ceil(n_source_train / (per_step * world_size)))


def _selection_key(metrics: dict, select_metric: str) -> tuple[float, float, float]:
    """Source-val ``train.select_metric`` first; ties (common for F1 on small val sets) go to the other one,
    then to the lower validation loss: once source-val is separated perfectly, wider margins still count."""
    other = "auroc" if select_metric == "f1" else "f1"
    return metrics[f"val_{select_metric}"], metrics[f"val_{other}"], -metrics.get("val_loss", 0.0)


def stop_reason(history: list[dict], select_metric: str, patience: int, epochs: int) -> Optional[str]:
    """Why training stops after the last epoch of ``history`` (source-val metrics only), or None to go on.

    ``patience`` epochs without a better selection key (``train.select_metric``, ties broken by the
    other metric, then by the validation loss) stop it; ``train.epochs`` is the budget that a
    converged run stays inside.
    """
    if not history:
        return None
    last = history[-1]
    keys = [_selection_key(h, select_metric) for h in history]
    best_at = max(range(len(keys)), key=lambda i: (keys[i], -i))
    if patience and len(history) - 1 - best_at >= patience:
        return f"no source-val gain for {patience} epochs (best epoch {history[best_at]['epoch']})"
    if last["epoch"] + 1 >= epochs:
        return f"budget: train.epochs={epochs}"
    return None


def train_loop(cfg: FusionLogConfig, data: TrainData, report: Report, resume: Optional[dict] = None,
               device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> dict:
    """Train the small model (meta or source_only), validate on source-val, report every epoch.

    ``report(metrics, state)`` gets a checkpointable ``state`` each epoch; ``resume`` is such a state.
    Each epoch's tasks come from a generator seeded by (seed, epoch, rank), so a resumed run draws
    exactly what an uninterrupted one would. Returns the best epoch (by ``train.select_metric``).
    """
    # init: same seed on every rank, then rank 0's weights everywhere
    torch.manual_seed(cfg.run.seed)
    model = SmallModel(cfg.model, data.table.vectors).to(device)
    broadcast_params(model)
    opts = make_optimizers(model, cfg.meta)
    pos_weight = resolve_pos_weight(cfg.meta.pos_weight, data.source_train_labels)
    start_epoch, best, history = 0, None, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        for name, opt in opts.items():
            opt.load_state_dict(resume["optimizers"][name])
        start_epoch, best, history = resume["epoch"] + 1, resume["best"], resume["history"]
        log.info("resuming after epoch %d", resume["epoch"])
        if resume.get("stopped") and not resume["stopped"].startswith("budget"):
            start_epoch = cfg.train.epochs  # it had converged: a larger budget changes nothing
    steps = steps_per_epoch(cfg.train, cfg.meta, len(data.source_train), world_size)
    log.info("training %s: %d epochs x %d steps, %d workers, pos_weight %.3g, data %s", cfg.meta.method,
             cfg.train.epochs, steps, world_size, pos_weight, data.counts)

    for epoch in range(start_epoch, cfg.train.epochs):
        rng = np.random.default_rng([cfg.run.seed, epoch, rank])
        model.train()
        stats, truncated = [], 0
        for _ in range(steps):
            if cfg.meta.method == "meta":
                tasks = []
                for _ in range(cfg.meta.tasks_per_step):
                    rows = sample_task_rows(rng, data.source_train_labels, len(data.target), cfg.meta)
                    task, cut = make_task(model, rows, data, cfg.model.max_len, device, rng)
                    tasks.append(task)
                    truncated += cut
                stats.append(meta_step(model, opts, tasks, cfg.meta, pos_weight))
            else:
                rows, _ = sample_source_rows(rng, data.source_train_labels, cfg.meta.batch_size, 0)
                batch, cut = make_task_set(model, [data.source_train[i] for i in rows], data.source_train_labels[rows],
                                           [], cfg.model.max_len, device, rng)
                truncated += cut
                stats.append(source_only_step(model, opts, batch, pos_weight))

        metrics = {"epoch": epoch, "train_truncated": truncated,
                   **{k: float(np.mean([s[k] for s in stats])) for k in stats[0]}}
        if rank == 0:  # validation is rank 0's job; only its metrics and checkpoint are kept
            metrics.update(validate_source(model, data, cfg.train.eval_batch_size, cfg.model.max_len, device))
            key = cfg.train.select_metric
            if best is None or _selection_key(metrics, key) > _selection_key(best["metrics"], key):
                best = {"epoch": epoch, "metrics": dict(metrics),
                        "model": copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})}
            history.append(metrics)
        reason = stop_reason(history, cfg.train.select_metric, cfg.train.patience, cfg.train.epochs) if rank == 0 else None
        reason = agree_on_stop(reason)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
        state = {"epoch": epoch, "model": model.state_dict(), "best": best, "history": history,
                 "optimizers": {name: opt.state_dict() for name, opt in opts.items()}, "stopped": reason}
        report(metrics, state)
        if reason:
            log.info("stopped after epoch %d: %s", epoch, reason)
            break
    return {"model": model, "best": best, "history": history, "stopped": reason}


def agree_on_stop(reason: Optional[str]) -> Optional[str]:
    """Rank 0's decision for every worker (only it validates); a no-op in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return reason
    box = [reason]
    dist.broadcast_object_list(box, src=0)
    return box[0]
