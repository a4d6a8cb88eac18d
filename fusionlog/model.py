"""The ZeroLog small model (FusionLog §III-C): nn.Modules only (nanoGPT's model.py shape).

f_e  = FeatureExtractor: GRU over event vectors + attention pooling -> sequence representation
f_ω  = anomaly head (logit; probability = sigmoid)
f_d  = domain head (logit; BCE with logits, target = 1)
Batches are padded index tensors (B, T) into a frozen event-vector table plus lengths (B,).
"""
from __future__ import annotations

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


class FeatureExtractor(nn.Module):
    """f_e: GRU + attention pooling.

    Padding is handled by masking, which is exact here: the GRU is unidirectional, so the state at
    position t < length never sees the padding after it, and pooling ignores positions >= length.
    Masking (unlike packing) also works unchanged under torch.func for second-order meta-gradients.
    """

    def __init__(self, input_dim: int, cfg: ModelConfig):
        super().__init__()
        self.gru = nn.GRU(input_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.pool = AttentionPool(cfg.hidden, cfg.attention_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x)
        return self.pool(states, lengths)


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
        self.register_buffer("table", torch.cat([vectors, vectors.new_zeros(1, vectors.shape[1])]), persistent=False)
        self.extractor = FeatureExtractor(vectors.shape[1], cfg)
        self.anomaly_head = Head(cfg.hidden, cfg.head_hidden)
        self.domain_head = Head(cfg.hidden, cfg.head_hidden)

    @property
    def pad_index(self) -> int:
        return self.table.shape[0] - 1

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) event indices -> (B, T, d) frozen event vectors."""
        return self.table[idx]

    def features(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.extractor(self.embed(idx), lengths)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly and domain logits, each (B,)."""
        z = self.features(idx, lengths)
        return self.anomaly_head(z), self.domain_head(z)
