"""Multi-round collaborative distillation between the LLM and the small model (FusionLog §III-D,
Algorithm 1 lines 18-39).

Round r: the LLM labels every sequence left in the proprietary pool (few-shot examples retrieved
from the knowledge base K(r)); the small model labels it too; a sequence is *clean* when both agree
and the small model's confidence is at least epsilon(r).  The clean set fine-tunes the small model
and joins K(r+1); the rest stays noisy.  After the last round the noisy leftovers take the LLM's
label and fine-tune the model once more.  Each fine-tuning replays every clean sample so far
(``distill.replay``, ours) and is skipped while they hold one class only.  Target labels never
enter this module.

``distill.scope=all`` (ours) puts every target sequence in the pool, general ones too: the router
then only picks meta-learning's target side and K(0).  It is for a cheap teacher when the small
model transfers poorly, since the paper's scope leaves general sequences to the small model alone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from fusionlog import progress
from fusionlog.config import DistillConfig, RetrievalConfig
from fusionlog.meta import batch_tensors, classification_loss, predict_proba
from fusionlog.model import SmallModel
from fusionlog.retrieval import Record, VectorStore, sequence_content, sequence_vectors
from fusionlog.teachers import Example, LabelRequest, Teacher

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- pure parts


def epsilon_schedule(cfg: DistillConfig) -> list[float]:
    """epsilon(r) = epsilon0 - r * step (paper: 0.9, 0.85, ...), or epsilon0 every round (static ablation)."""
    step = 0.0 if cfg.static_threshold else cfg.epsilon_step
    return [round(max(0.0, cfg.epsilon0 - r * step), 6) for r in range(cfg.rounds)]


def sm_labels(probs: np.ndarray, threshold: float, selection: str = "rank") -> tuple[np.ndarray, np.ndarray]:
    """Small-model label (probs >= threshold) and its confidence.

    ``probability`` (the paper): p for "anomalous", 1 - p for "normal". ``rank`` (ours): the share of
    its predicted class it ranks above, in (0, 1]: the most anomalous of the anomalous and the most
    normal of the normal score 1 whatever the threshold, so ``confidence >= epsilon`` takes the top
    ``1 - epsilon`` of *each* class and both classes reach fine-tuning (with a threshold far from 0.5,
    p or 1 - p never reaches 0.9 for one of them, and the clean pool stayed empty).
    """
    labels = (probs >= threshold).astype(np.int8)
    if selection == "probability":
        return labels, np.where(labels == 1, probs, 1.0 - probs)
    conf = np.zeros(len(probs))
    for cls, sign in ((1, 1.0), (0, -1.0)):
        rows = np.flatnonzero(labels == cls)
        order = np.argsort(sign * probs[rows], kind="stable")  # least to most confident
        conf[rows[order]] = np.arange(1, len(rows) + 1) / max(1, len(rows))
    return labels, conf


def rate_threshold(scores: np.ndarray, rate: float) -> float:
    """The cut that flags a ``rate`` share of ``scores`` (label = score >= cut): between the last flagged
    and the first passed score. A label-free decision: the rate comes from the teacher, not from labels."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if not len(s):
        raise ValueError("rate_threshold: no scores")
    k = int(round(min(max(rate, 0.0), 1.0) * len(s)))
    if k == 0:
        return float(np.nextafter(s[0], np.inf))
    if k >= len(s):
        return float(s[-1])
    return float((s[k - 1] + s[k]) / 2.0) if s[k - 1] > s[k] else float(s[k - 1])


def select_clean(llm: np.ndarray, sm: np.ndarray, confidence: np.ndarray, epsilon: float,
                 dual_verification: bool = True) -> np.ndarray:
    """Clean = teacher and small model agree and confidence >= epsilon (line 28); a sequence the teacher
    did not answer (-1) is never clean. Without dual verification the teacher alone decides (ablation)."""
    answered = llm >= 0
    if not dual_verification:
        return answered
    return answered & (llm == sm) & (confidence >= epsilon)


# ----------------------------------------------------------------------------- fine-tuning


def finetune(model: SmallModel, sequences: Sequence[np.ndarray], labels: np.ndarray, cfg: DistillConfig,
             max_len: int, seed: int) -> float:
    """FineTune(theta, D): BCE on pseudo-labelled target sequences, f_e and f_omega together; mean last-epoch loss.

    Runs ``finetune_epochs`` passes, or more if that is fewer than ``finetune_min_steps`` optimizer steps.
    """
    if not len(sequences):
        return float("nan")
    gen = np.random.default_rng(seed)
    params = [*model.extractor.parameters(), *model.anomaly_head.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.finetune_lr)
    y_all = np.asarray(labels, dtype=np.float32)
    batches = -(-len(sequences) // cfg.finetune_batch_size)
    epochs = max(cfg.finetune_epochs, -(-cfg.finetune_min_steps // batches))
    model.train()
    losses: list[float] = []
    for _ in range(epochs):
        losses = []
        order = gen.permutation(len(sequences))
        for start in range(0, len(order), cfg.finetune_batch_size):
            rows = order[start:start + cfg.finetune_batch_size]
            idx, lengths, counts, _ = batch_tensors(model, [sequences[i] for i in rows], max_len, "cpu", gen)
            logits, _ = model(idx, lengths, counts)
            loss = classification_loss(logits, torch.from_numpy(y_all[rows]), 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    model.eval()
    return float(np.mean(losses))


# ----------------------------------------------------------------------------- the loop


@dataclass
class DistillInputs:
    """The target side, indexed into the small model's event table (rows of ``event_vectors``)."""

    model: SmallModel
    threshold: float  # the small model's decision threshold, chosen on source-val
    event_vectors: np.ndarray
    templates: list[str]  # template text per event-table row
    sequences: list[np.ndarray]
    seq_ids: list[str]
    general: np.ndarray  # bool per sequence, from routing
    system: str  # target system name, for the prompt
    max_len: int = 512


@dataclass
class RoundLog:
    round: int
    epsilon: float
    pool: int
    clean: int
    noisy: int
    llm_unparsed: int  # pool sequences the teacher did not answer
    llm_anomalous: int  # pool sequences the teacher called anomalous
    kb_size: int
    finetune_loss: float  # NaN: no fine-tuning this round (an empty or one-class set)
    clean_anomalous: int = 0  # of ``clean``, pseudo-labelled anomalous
    finetuned_on: int = 0  # sequences the round fine-tuned on (0: skipped)
    sm_threshold: float = 0.5  # the small model's label cut this round


@dataclass
class DistillResult:
    rounds: list[RoundLog] = field(default_factory=list)
    pseudo_labels: dict[str, tuple[int, float, int]] = field(default_factory=dict)  # seq_id -> (label, target, round; -1 leftovers)
    kb_initial: int = 0
    kb_final: int = 0
    pool_initial: int = 0
    pool_capped: int = 0  # proprietary sequences left out of the teacher's pool by distill.max_pool
    held_out: int = 0  # pool sequences never fine-tuned on (distill.holdout)
    teacher_rate: float = float("nan")  # share of answered sequences the teacher called anomalous
    leftovers: int = 0
    leftover_unparsed: int = 0
    leftover_finetuned_on: int = 0  # sequences the leftovers' fine-tuning used (0: skipped)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["pseudo_labels"] = len(self.pseudo_labels)
        return d


def _requests(rows: np.ndarray, inp: DistillInputs, store: VectorStore, vecs: np.ndarray, k: int,
              use_rag: bool) -> list[LabelRequest]:
    """One request per row with its k nearest knowledge-base examples, never the sequence itself
    (with ``distill.scope=all`` a general sequence is both in K(0) and in the pool)."""
    hits = store.search(vecs[rows], k + 1) if use_rag and store.count() else [[] for _ in rows]
    out = []
    for i, found in zip(rows, hits):
        found = [r for r in found if r.seq_id != inp.seq_ids[i]][:k]
        examples = [Example(templates=r.content.split("\n"), label=r.label, confidence=r.confidence) for r in found]
        out.append(LabelRequest(inp.seq_ids[i], inp.system, [inp.templates[e] for e in inp.sequences[i]], examples))
    return out


def _ask(teacher: Teacher, requests: list[LabelRequest], asked: dict[tuple, tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) for the requests, reusing a deterministic teacher's answer to an identical earlier request.

    A round that adds nothing to the knowledge base retrieves the same examples again, so the
    same prompt would be scored again; a sampling LLM (generate mode) is asked afresh instead.
    """
    def key(r: LabelRequest) -> tuple:
        return (r.seq_id, tuple(r.templates), tuple((tuple(e.templates), e.label, round(e.confidence, 6))
                                                    for e in r.examples))

    reuse = teacher.deterministic
    todo = [r for r in requests if not reuse or key(r) not in asked]
    if len(todo) < len(requests):
        progress.advance(len(requests) - len(todo), note=f"{len(requests) - len(todo)} answers reused")
    labels, scores = _label_with_progress(teacher, todo)
    if not reuse:
        return labels, scores
    for r, y, p in zip(todo, labels, scores):
        asked[key(r)] = (int(y), float(p))
    answers = [asked[key(r)] for r in requests]
    return (np.array([a[0] for a in answers], dtype=np.int8).reshape(-1),
            np.array([a[1] for a in answers], dtype=np.float64).reshape(-1))


def _label_with_progress(teacher: Teacher, requests: list[LabelRequest]) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's answers in about ten calls, logging progress (CPU LLMs take seconds a request)."""
    chunk = max(16, -(-len(requests) // 10))
    labels, scores = [np.zeros(0, np.int8)], [np.zeros(0)]
    for start in range(0, len(requests), chunk):
        y, p = teacher.label(requests[start:start + chunk])
        labels.append(y)
        scores.append(p)
        progress.advance(len(y))
        if len(requests) > chunk:
            log.info("teacher: %d/%d sequences labelled", min(start + chunk, len(requests)), len(requests))
    return np.concatenate(labels), np.concatenate(scores)


def _records(rows: np.ndarray, labels: np.ndarray, confidence: np.ndarray, inp: DistillInputs,
             max_events: int) -> list[Record]:
    return [Record(inp.seq_ids[i], sequence_content([inp.templates[e] for e in inp.sequences[i]], max_events),
                   int(y), float(c)) for i, y, c in zip(rows, labels, confidence)]


def _training_set(tuned: dict[int, float], rows: np.ndarray, targets: np.ndarray, replay: bool) -> tuple[list, list]:
    """Record new fine-tuning targets in ``tuned``; fine-tune on every one so far (replay) or on these only."""
    tuned.update(zip(rows.tolist(), np.asarray(targets, dtype=np.float64).tolist()))
    return (list(tuned), list(tuned.values())) if replay else (rows.tolist(), np.asarray(targets).tolist())


def _finetune_two_class(inp: DistillInputs, rows: list[int], targets, cfg: DistillConfig, seed: int,
                        what: str) -> float:
    """Fine-tune on ``rows`` unless their pseudo-labels hold one class only.

    A one-class set teaches no boundary, only to say that class to everything: a first round whose
    clean set is all "normal" would make every later sequence "normal" with high confidence.
    """
    targets = np.asarray(targets, dtype=np.float64)
    classes = set((targets >= 0.5).tolist())
    if len(classes) < 2:
        if len(targets):
            log.info("%s: %d pseudo-labelled sequences, all %s: not fine-tuning on one class", what, len(targets),
                     "anomalous" if classes == {True} else "normal")
        return float("nan")
    return finetune(inp.model, [inp.sequences[i] for i in rows], targets, cfg, inp.max_len, seed)


def distill(inp: DistillInputs, teacher: Teacher, store: VectorStore, cfg: DistillConfig, rcfg: RetrievalConfig,
            seed: int = 0) -> DistillResult:
    """Algorithm 1, lines 19-38, on ``inp.model`` in place."""
    res = DistillResult()
    rng = np.random.default_rng(seed)
    vecs = sequence_vectors(inp.sequences, inp.event_vectors)
    probs, _ = predict_proba(inp.model, inp.sequences, cfg.finetune_batch_size, inp.max_len)
    labels, conf = sm_labels(probs, inp.threshold, cfg.selection)
    general = np.flatnonzero(inp.general)
    store.add(_records(general, labels[general], conf[general], inp, rcfg.max_content_events), vecs[general])  # K(0)
    res.kb_initial = store.count()
    pool = np.arange(len(inp.sequences)) if cfg.scope == "all" else np.flatnonzero(~inp.general)
    res.pool_initial = len(pool)
    teacher.fit([[inp.templates[e] for e in seq] for seq in inp.sequences])  # statistical teachers model the target
    if cfg.max_pool and len(pool) > cfg.max_pool:
        keep = np.sort(rng.choice(pool, cfg.max_pool, replace=False))
        res.pool_capped = len(pool) - len(keep)
        log.warning("distill.max_pool=%d: %d of %d pool sequences go to the teacher; the other %d keep the "
                    "small model's prediction", cfg.max_pool, len(keep), len(pool), res.pool_capped)
        pool = keep
    holdout = np.sort(rng.choice(pool, int(round(cfg.holdout * len(pool))), replace=False))
    res.held_out = len(holdout)
    pool = np.setdiff1d(pool, holdout)
    last = np.full(len(inp.sequences), -1, dtype=np.int8)  # the teacher's latest label per sequence
    last_score = np.full(len(inp.sequences), np.nan)
    asked: dict[tuple, tuple[int, float]] = {}  # a deterministic teacher's answers, by request content
    if len(holdout):  # asked once, for the teacher's positive rate; never fine-tuned on
        with progress.stage("distill held-out", len(holdout), "seq"):
            last[holdout], last_score[holdout] = _ask(teacher, _requests(holdout, inp, store, vecs, rcfg.top_k,
                                                                         cfg.use_rag), asked)
    tuned: dict[int, float] = {}  # sequence row -> fine-tuning target, every clean sample so far (replayed)
    for r, eps in enumerate(epsilon_schedule(cfg)):
        if not len(pool):
            log.info("round %d: the noisy pool is empty; stopping early", r)
            break
        with progress.stage(f"distill {r + 1}/{cfg.rounds}", len(pool), "seq"):
            y_t, p_t = _ask(teacher, _requests(pool, inp, store, vecs, rcfg.top_k, cfg.use_rag), asked)
        last[pool], last_score[pool] = y_t, p_t
        probs, _ = predict_proba(inp.model, [inp.sequences[i] for i in pool], cfg.finetune_batch_size, inp.max_len)
        cut = inp.threshold
        if cfg.selection == "rank" and (y_t >= 0).any():  # label the small model at the teacher's positive rate
            cut = rate_threshold(probs, float(np.mean(y_t[y_t >= 0] == 1)))
        sm, sm_conf = sm_labels(probs, cut, cfg.selection)
        clean_mask = select_clean(y_t, sm, sm_conf, eps, cfg.dual_verification)
        clean = pool[clean_mask]
        targets = p_t[clean_mask] if cfg.soft_labels else y_t[clean_mask]
        rows, values = _training_set(tuned, clean, targets, cfg.replay)
        loss = _finetune_two_class(inp, rows, values, cfg, seed + r, f"round {r}")
        store.add(_records(clean, y_t[clean_mask], sm_conf[clean_mask], inp, rcfg.max_content_events), vecs[clean])
        for i, y, t in zip(clean, y_t[clean_mask], targets):
            res.pseudo_labels[inp.seq_ids[i]] = (int(y), float(t), r)
        entry = RoundLog(r, eps, len(pool), len(clean), len(pool) - len(clean), int((y_t < 0).sum()),
                         int((y_t == 1).sum()), store.count(), loss,
                         clean_anomalous=int((y_t[clean_mask] == 1).sum()),
                         finetuned_on=0 if np.isnan(loss) else len(rows), sm_threshold=float(cut))
        res.rounds.append(entry)
        log.info("round %d: epsilon=%.2f pool=%d clean=%d (%d anomalous) noisy=%d kb=%d", r, eps, entry.pool,
                 entry.clean, entry.clean_anomalous, entry.noisy, entry.kb_size)
        pool = pool[~clean_mask]
    res.leftovers = len(pool)
    if len(pool) and cfg.leftovers == "llm":
        answered = pool[last[pool] >= 0]
        res.leftover_unparsed = len(pool) - len(answered)
        targets = last_score[answered] if cfg.soft_labels else last[answered]
        rows, values = _training_set(tuned, answered, targets, cfg.replay)
        loss = _finetune_two_class(inp, rows, values, cfg, seed + cfg.rounds, "leftovers")
        res.leftover_finetuned_on = 0 if np.isnan(loss) else len(rows)
        for i, t in zip(answered, targets):
            res.pseudo_labels[inp.seq_ids[i]] = (int(last[i]), float(t), -1)
    answered = last >= 0
    res.teacher_rate = float(np.mean(last[answered] == 1)) if answered.any() else float("nan")
    res.kb_final = store.count()
    return res


def fused_threshold(model: SmallModel, sequences: list[np.ndarray], tuned_ids: set[str], seq_ids: list[str],
                    teacher_rate: float, source_threshold: float, rule: str, batch_size: int, max_len: int) -> dict:
    """The fused model's decision threshold, chosen without target labels and out of sample.

    ``rate`` (ours): the fused model's scores on the target sequences it was never fine-tuned on (the
    held-out share of the pool and, in the paper's scope, the general sequences), cut so that the
    share flagged equals the teacher's positive rate. The scale of the fused scores moves with
    fine-tuning, so the source-val threshold (``source``) no longer means what it did; the rate the
    teacher sees on the target is the one label-free estimate of how many anomalies there are.
    """
    keep = {"value": source_threshold, "chosen_on": "source-val"}
    if rule == "source" or not np.isfinite(teacher_rate):
        return keep
    rows = [i for i, s in enumerate(seq_ids) if s not in tuned_ids]
    if not rows:
        log.warning("every target sequence was fine-tuned on: keeping the source-val threshold")
        return keep
    probs, _ = predict_proba(model, [sequences[i] for i in rows], batch_size, max_len)
    return {"value": rate_threshold(probs, teacher_rate), "rate": teacher_rate,
            "chosen_on": f"{len(rows)} target sequences never fine-tuned on, cut at the teacher's positive rate "
                         f"{teacher_rate:.4f}"}
