"""The small model's modules: shapes, exact masking, the frozen table outside the state dict."""
import numpy as np
import pytest
import torch

from fusionlog.config import ModelConfig
from fusionlog.model import AttentionPool, Head, SmallModel

CFG = ModelConfig(hidden=8, layers=1, attention_dim=4, head_hidden=4, max_len=16)


def _model(cfg: ModelConfig = CFG, n_events: int = 5, dim: int = 3) -> SmallModel:
    torch.manual_seed(0)
    return SmallModel(cfg, np.arange(n_events * dim, dtype=np.float32).reshape(n_events, dim) / 10)


def test_shapes_and_pad_row():
    model = _model()
    assert model.pad_index == 5
    assert torch.equal(model.table[5], torch.zeros(3))
    idx = torch.tensor([[0, 1, 2], [3, 5, 5]])
    anomaly, domain = model(idx, torch.tensor([3, 1]))
    assert anomaly.shape == (2,) and domain.shape == (2,)
    assert model.features(idx, torch.tensor([3, 1])).shape == (2, 8)


def test_padding_does_not_change_the_output():
    """Masking is exact: a sequence alone, padded longer, or batched with others scores the same."""
    model = _model()
    alone, _ = model(torch.tensor([[4, 1]]), torch.tensor([2]))
    padded, _ = model(torch.tensor([[4, 1, 5, 5, 5]]), torch.tensor([2]))
    batched, _ = model(torch.tensor([[0, 1, 2, 3, 4], [4, 1, 5, 5, 5]]), torch.tensor([5, 2]))
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(batched[1:], alone, rtol=0, atol=1e-6)


def test_attention_pool_ignores_padding_exactly():
    pool = AttentionPool(hidden=1, attention_dim=2)
    with torch.no_grad():
        pool.proj.weight.zero_()
        pool.proj.bias.zero_()  # equal scores -> uniform weights over the valid steps
    states = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert pool(states, torch.tensor([2])).item() == pytest.approx(2.0)
    assert pool(states, torch.tensor([3])).item() == pytest.approx(104.0 / 3)


def test_linear_head_and_table_not_in_state_dict():
    model = _model(ModelConfig(hidden=8, attention_dim=4, head_hidden=0))
    assert isinstance(model.anomaly_head.net, torch.nn.Linear)
    assert isinstance(Head(8, 4).net, torch.nn.Sequential)
    assert "table" not in model.state_dict()
    assert all(not k.startswith("table") for k, _ in model.named_parameters())


def test_gradients_reach_extractor_but_not_the_table():
    model = _model()
    anomaly, domain = model(torch.tensor([[0, 1, 2]]), torch.tensor([3]))
    (anomaly + domain).sum().backward()
    assert model.extractor.gru.weight_ih_l0.grad is not None
    assert not model.table.requires_grad
