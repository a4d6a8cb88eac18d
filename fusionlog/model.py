"""The ZeroLog small model (FusionLog §III-C): nn.Modules only (nanoGPT's model.py shape).

f_e  = FeatureExtractor: GRU over event vectors + attention pooling -> sequence representation,
       beside it (``model.count_branch``, ours) the sequence's log event counts through a small MLP
f_ω  = anomaly head (logit; probability = sigmoid)
f_d  = domain head (logit; BCE with logits, target = 1)
Batches are padded index tensors (B, T) into a frozen event-vector table plus lengths (B,), and,
with the count branch, log1p event counts (B, E) of the whole sequence (never truncated).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fusionlog.config import ModelConfig


class AttentionPool(nn.Module):
    """Additive self-attention over GRU states, masked to each sequence's length."""

    def __init__(self, hidden: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(hidden, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.proj(states))).squeeze(-1)  # (B, T)
        mask = torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]
        weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return torch.einsum("bt,bth->bh", weights, states)


BUCKET = 64  # ours: sequences per length-sorted chunk of a batch (see length_chunks)
# ours: one GRU step's fixed cost (dispatch, small kernels) in multiply-adds of work. Measured on CPU
# (1-2 threads, training and inference): worth ~64 sequences at hidden 64 and ~20 at hidden 128.
STEP_MACS = 1_400_000


def gru_row_macs(input_dim: int, hidden: int, layers: int) -> int:
    """Multiply-adds of one sequence's GRU step: 3 gates x hidden x (input + hidden) per layer."""
    return 3 * hidden * (input_dim + hidden) + (layers - 1) * 3 * hidden * 2 * hidden


def length_chunks(lengths: torch.Tensor, size: int, step_cost: float) -> Optional[list[torch.Tensor]]:
    """Row groups of ``size`` length-sorted sequences, or None when one padded batch is cheaper.

    The GRU's time is about longest-length x (step_cost + rows), step_cost in rows' worth of work:
    chunks pay when lengths are long-tailed (a random training batch of BGL windows), not when a
    batch is already near-equal (inference sorts windows by length before batching), where they
    would only multiply the steps.
    """
    if len(lengths) <= size:
        return None
    order = torch.argsort(lengths)
    chunks = [order[start:start + size] for start in range(0, len(order), size)]
    chunked = sum(int(lengths[rows].max()) * (step_cost + len(rows)) for rows in chunks)
    return chunks if chunked < int(lengths.max()) * (step_cost + len(lengths)) else None


class CountBranch(nn.Module):
    """log1p event counts -> a small MLP; its first layer is tied to the frozen event vectors.

    First-layer weight of event e = A v_e + r_e (v_e its unit event vector): the tied part A v_e
    carries what is learnt on the source to target events it never saw (events are compared through
    their text), and the per-event residual r_e, zero at start, lets training tell apart events
    whose vectors coincide (HDFS has two pairs of templates that differ only in a number) without
    giving events it never saw random weights. PCA's AUROC on HDFS (0.97) says counts carry that
    system's signal. The (E, hidden) weight is formed once per call, so a batch costs one
    (B, E) x (E, hidden) product instead of a (B, E) x (E, d) bag of vectors and a second product.
    """

    def __init__(self, unit: torch.Tensor, hidden: int):
        super().__init__()
        self.register_buffer("unit", unit, persistent=False)
        self.tied = nn.Linear(unit.shape[1], hidden)
        self.residual = nn.Parameter(torch.zeros(unit.shape[0], hidden))
        self.out = nn.Linear(hidden, hidden)

    def event_weights(self) -> torch.Tensor:
        """(E, hidden): the first layer's weight of each event, A v_e + r_e."""
        return self.unit @ self.tied.weight.T + self.residual

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        """``counts`` (B, E) log1p counts of each event in each whole sequence."""
        return F.relu(self.out(F.relu(counts @ self.event_weights() + self.tied.bias)))


class FeatureExtractor(nn.Module):
    """f_e: GRU + attention pooling, and the count branch when configured.

    Padding is handled by masking, which is exact here: the GRU is unidirectional, so the state at
    position t < length never sees the padding after it, and pooling ignores positions >= length.
    Masking (unlike packing) also works unchanged under torch.func for second-order meta-gradients.
    """

    def __init__(self, unit: torch.Tensor, cfg: ModelConfig):
        """``unit``: (E, d) unit event vectors, for the count branch's tied layer."""
        super().__init__()
        self.gru = nn.GRU(unit.shape[1], cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.row_macs = gru_row_macs(unit.shape[1], cfg.hidden, cfg.layers)
        self.pool = AttentionPool(cfg.hidden, cfg.attention_dim)
        self.count = CountBranch(unit, cfg.count_hidden) if cfg.count_branch else None
        self.out_dim = cfg.hidden + (cfg.count_hidden if cfg.count_branch else 0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, counts: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = self.sequence_features(x, lengths)
        if self.count is None:
            return z
        if counts is None:
            raise ValueError("model.count_branch is on: the batch needs the sequences' event counts")
        return torch.cat([z, self.count(counts)], dim=1)

    def sequence_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """GRU + pooling, over length-sorted chunks each cut to its own longest where that is cheaper.

        Exact (masking makes padding irrelevant) and much cheaper when lengths are long-tailed: one
        window of 512 events no longer makes 255 short ones run 512 GRU steps (measured 3x on BGL
        windows, 1.4x on HDFS blocks; PyTorch's packed sequences were slower on CPU).
        """
        chunks = length_chunks(lengths, BUCKET, STEP_MACS / self.row_macs)
        if chunks is None:
            states, _ = self.gru(x[:, :int(lengths.max())])
            return self.pool(states, lengths)
        parts = []
        for rows in chunks:
            part_lengths = lengths[rows]
            states, _ = self.gru(x[rows, :int(part_lengths.max())])
            parts.append(self.pool(states, part_lengths))
        return torch.cat(parts)[torch.argsort(torch.cat(chunks))]


class Head(nn.Module):
    """A small MLP (or linear layer) from the sequence representation to one logit."""

    def __init__(self, hidden: int, head_hidden: int):
        super().__init__()
        if head_hidden:
            self.net = nn.Sequential(nn.Linear(hidden, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))
        else:
            self.net = nn.Linear(hidden, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


class SmallModel(nn.Module):
    """f_e + f_ω + f_d over a frozen event-vector table.

    The table is a non-persistent buffer with one extra zero row for padding (``pad_index``); it is
    saved beside the weights in the model artifact, not inside the state dict.
    """

    def __init__(self, cfg: ModelConfig, vectors: np.ndarray | torch.Tensor):
        super().__init__()
        vectors = torch.tensor(np.asarray(vectors, dtype=np.float32))  # a private copy: the table is frozen
        assert vectors.ndim == 2, f"event vectors must be (E, d), got shape {tuple(vectors.shape)}"
        if not torch.isfinite(vectors).all():
            raise ValueError("event vectors hold NaN or infinite values; re-run prepare (embedding) for this data")
        self.register_buffer("table", torch.cat([vectors, vectors.new_zeros(1, vectors.shape[1])]), persistent=False)
        unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.extractor = FeatureExtractor(unit, cfg)
        self.anomaly_head = Head(self.extractor.out_dim, cfg.head_hidden)
        self.domain_head = Head(self.extractor.out_dim, cfg.head_hidden)

    @property
    def pad_index(self) -> int:
        return self.table.shape[0] - 1

    @property
    def n_events(self) -> int:
        return self.table.shape[0] - 1

    @property
    def uses_counts(self) -> bool:
        return self.extractor.count is not None

    def inputs(self, idx: torch.Tensor, lengths: torch.Tensor,
               counts: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
        """The extractor's arguments: (B, T, d) frozen event vectors, lengths, and the counts."""
        if counts is None:
            return F.embedding(idx, self.table), lengths
        return F.embedding(idx, self.table), lengths, counts

    def features(self, idx: torch.Tensor, lengths: torch.Tensor,
                 counts: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.extractor(*self.inputs(idx, lengths, counts))

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor,
                counts: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly and domain logits, each (B,)."""
        z = self.features(idx, lengths, counts)
        return self.anomaly_head(z), self.domain_head(z)
