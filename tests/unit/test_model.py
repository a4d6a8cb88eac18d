"""The small model's modules: shapes, exact masking, the frozen table outside the state dict."""
import numpy as np
import pytest
import torch

from fusionlog.config import ModelConfig
from fusionlog.model import AttentionPool, Head, SmallModel

CFG = ModelConfig(hidden=8, layers=1, attention_dim=4, head_hidden=4, max_len=16, count_branch=False)


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
    model = _model(ModelConfig(hidden=8, attention_dim=4, head_hidden=0, count_branch=False))
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


def test_count_branch_sees_the_whole_sequence_and_starts_tied_to_the_event_vectors():
    from fusionlog.dataset import count_features

    model = _model(ModelConfig(hidden=8, attention_dim=4, head_hidden=4, count_branch=True, count_hidden=6))
    seqs = [np.array([0, 0, 4]), np.array([4])]
    counts = torch.from_numpy(count_features(seqs, model.n_events))
    np.testing.assert_allclose(counts[0].numpy(), np.log1p([2, 0, 0, 0, 1]), rtol=1e-6)
    idx = torch.tensor([[0, 0, 4], [4, 5, 5]])
    assert model.features(idx, torch.tensor([3, 1]), counts).shape == (2, 8 + 6)
    with pytest.raises(ValueError, match="needs the sequences' event counts"):
        model(idx, torch.tensor([3, 1]))
    # the per-event residual starts at zero: two events with the same vector are the same to it at first ...
    twins = SmallModel(ModelConfig(hidden=4, attention_dim=2, head_hidden=0, count_hidden=3),
                       np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    a, b = (torch.from_numpy(count_features([np.array([e])], 3)) for e in (0, 1))
    za, zb = (twins.extractor.count(c) for c in (a, b))
    torch.testing.assert_close(za, zb)
    # ... and training can tell them apart through it
    with torch.no_grad():
        twins.extractor.count.residual[0] += 1.0
    assert not torch.allclose(twins.extractor.count(a), zb)


def test_nan_event_vectors_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        SmallModel(CFG, np.array([[np.nan, 0.0]], dtype=np.float32))


def test_chunks_are_taken_only_where_they_save_gru_work():
    from fusionlog.model import gru_row_macs, length_chunks

    near_equal = torch.tensor([19, 20] * 64)  # what inference batches look like: sorted by length first
    assert length_chunks(near_equal, size=64, step_cost=64) is None
    long_tailed = torch.tensor([5] * 120 + [128] * 8)  # one long window in a random training batch
    chunks = length_chunks(long_tailed, size=64, step_cost=64)
    assert [len(c) for c in chunks] == [64, 64]
    assert sorted(torch.cat(chunks).tolist()) == list(range(128))
    assert int(long_tailed[chunks[0]].max()) == 5
    assert length_chunks(long_tailed[:64], 64, 0) is None  # one chunk's worth is never split
    assert gru_row_macs(50, 64, 1) == 3 * 64 * 114 and gru_row_macs(50, 64, 2) == 3 * 64 * 114 + 3 * 64 * 128


def test_count_branch_first_layer_is_the_tied_layer_on_the_bag_plus_the_residual():
    model = _model(ModelConfig(hidden=8, attention_dim=4, head_hidden=4, count_branch=True, count_hidden=6))
    branch = model.extractor.count
    with torch.no_grad():
        branch.residual.normal_()
    counts = torch.rand(4, model.n_events)
    expected = torch.relu(branch.out(torch.relu(branch.tied(counts @ branch.unit) + counts @ branch.residual)))
    torch.testing.assert_close(branch(counts), expected)


def test_length_sorted_chunks_give_the_same_features_as_one_padded_batch(monkeypatch):
    from fusionlog import model as model_module
    from fusionlog.model import BUCKET

    monkeypatch.setattr(model_module, "STEP_MACS", 0)  # chunks look cheaper whenever they cut padding
    model = _model()
    torch.manual_seed(1)
    n = 2 * BUCKET + 7
    lengths = torch.randint(1, 12, (n,))
    idx = torch.full((n, 12), model.pad_index)
    for i, length in enumerate(lengths.tolist()):
        idx[i, :length] = torch.randint(0, 5, (length,))
    assert model_module.length_chunks(lengths, BUCKET, 0) is not None
    chunked = model.features(idx, lengths)
    states, _ = model.extractor.gru(model.table[idx])
    whole = model.extractor.pool(states, lengths)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
