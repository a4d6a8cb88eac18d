"""Meta-learning parts tested one by one (Algorithm 1 lines 10-16), then the loop as a whole."""
import copy
import math

import numpy as np
import pytest
import torch

from tests.unit._synthetic import make_system
from fusionlog.config import FusionLogConfig, MetaConfig, ModelConfig
from fusionlog.dataset import PreparedSystem, build_train_data, count_features
from fusionlog.meta import (adversarial_loss, anomaly_head_step, batch_tensors, classification_loss, domain_head_step,
                            inner_adapt,
                            make_optimizers, make_task, meta_gradients, meta_step, outer_step,
                            predict_distinct, predict_proba, resolve_pos_weight, sample_source_rows, sample_task_rows, steps_per_epoch,
                            task_objective, train_loop)
from fusionlog.model import SmallModel


@pytest.fixture(scope="module")
def data():
    return build_train_data([make_system("SRC", n_seq=160, seed=1)], make_system("TGT", n_seq=80, seed=2, shift=0.3),
                            0.25, seed=0)


def _cfg(**meta) -> FusionLogConfig:
    cfg = FusionLogConfig()
    cfg.model = ModelConfig(hidden=8, attention_dim=4, head_hidden=4, max_len=16)
    cfg.meta = MetaConfig(support_size=12, query_size=12, tasks_per_step=2, batch_size=24, meta_lr=1e-2,
                          anomaly_lr=1e-2, domain_lr=1e-2, **meta)
    cfg.train.epochs = 3
    cfg.train.steps_per_epoch = 3
    return cfg


def _tasks(data, cfg, model, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [make_task(model, sample_task_rows(rng, data.source_train_labels, len(data.target), cfg.meta), data,
                      cfg.model.max_len, "cpu")[0] for _ in range(n)]


def _model(data, cfg):
    torch.manual_seed(0)
    return SmallModel(cfg.model, data.table.vectors)


# ----------------------------------------------------------------------------- sampling


def test_sample_task_rows_disjoint_stratified_and_seeded(data):
    cfg = MetaConfig(support_size=20, query_size=20)
    rows = sample_task_rows(np.random.default_rng(7), data.source_train_labels, len(data.target), cfg)
    assert len(rows.support_source) == 20 and len(rows.query_source) == 20
    assert not set(rows.support_source) & set(rows.query_source)
    assert not set(rows.support_target) & set(rows.query_target)
    assert data.source_train_labels[rows.support_source].sum() >= 1
    assert data.source_train_labels[rows.query_source].sum() >= 1
    again = sample_task_rows(np.random.default_rng(7), data.source_train_labels, len(data.target), cfg)
    assert np.array_equal(again.query_target, rows.query_target)


def test_sample_source_rows_shrinks_when_the_pool_is_small():
    labels = np.array([1, 0, 0, 0], dtype=np.int8)
    a, b = sample_source_rows(np.random.default_rng(0), labels, 8, 8)
    assert len(a) + len(b) == 4 and labels[a].sum() + labels[b].sum() == 1


# ----------------------------------------------------------------------------- losses


def test_classification_loss_hand_values():
    logits = torch.zeros(2)
    assert classification_loss(logits, torch.tensor([1.0, 0.0]), 1.0).item() == pytest.approx(math.log(2))
    # pos_weight 3 triples the anomalous row's term: (3 ln2 + ln2) / 2
    assert classification_loss(logits, torch.tensor([1.0, 0.0]), 3.0).item() == pytest.approx(2 * math.log(2))


def test_adversarial_loss_source_is_0_target_is_1():
    assert adversarial_loss(torch.zeros(4), 2).item() == pytest.approx(math.log(2))
    assert adversarial_loss(torch.tensor([-20.0, -20.0, 20.0]), 2).item() == pytest.approx(0.0, abs=1e-8)
    assert adversarial_loss(torch.tensor([20.0, -20.0]), 1).item() == pytest.approx(20.0, rel=1e-6)


def test_task_objective_is_gamma_lc_minus_beta_lad(data):
    cfg = _cfg(beta=0.3, gamma=2.0)
    model = _model(data, cfg)
    task = _tasks(data, cfg, model, n=1)[0]
    obj, lc, lad = task_objective(model, dict(model.extractor.named_parameters()), task.support, cfg.meta, 1.0)
    assert obj.item() == pytest.approx(2.0 * lc.item() - 0.3 * lad.item())


# ----------------------------------------------------------------------------- updates


def test_inner_adapt_is_one_sgd_step_on_the_support_objective(data):
    cfg = _cfg(inner_lr=0.1)
    model = _model(data, cfg)
    task = _tasks(data, cfg, model, n=1)[0]
    theta = dict(model.extractor.named_parameters())
    loss, _, _ = task_objective(model, theta, task.support, cfg.meta, 1.0)
    grads = torch.autograd.grad(loss, list(theta.values()))
    adapted = inner_adapt(model, theta, task.support, cfg.meta, 1.0, second_order=False)
    for (name, p), g in zip(theta.items(), grads):
        torch.testing.assert_close(adapted[name], p - 0.1 * g)
        assert adapted[name].is_leaf  # first order: no graph back to theta


def test_second_order_equals_first_order_without_inner_step_and_differs_with_one(data):
    cfg = _cfg(inner_lr=0.0)
    model = _model(data, cfg)
    tasks = _tasks(data, cfg, model)
    first, _ = meta_gradients(model, tasks, cfg.meta, 1.0)
    cfg.meta.second_order = True
    second, _ = meta_gradients(model, tasks, cfg.meta, 1.0)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    cfg.meta.inner_lr = 1.0
    second, _ = meta_gradients(model, tasks, cfg.meta, 1.0)
    cfg.meta.second_order = False
    first, _ = meta_gradients(model, tasks, cfg.meta, 1.0)
    assert max(float((a - b).abs().max()) for a, b in zip(first, second)) > 1e-6
    assert all(torch.isfinite(g).all() for g in second)


def test_head_and_outer_steps_touch_only_their_own_module(data):
    cfg = _cfg()
    model = _model(data, cfg)
    opts = make_optimizers(model, cfg.meta)
    tasks = _tasks(data, cfg, model)
    with torch.no_grad():
        zs = [model.features(t.support.idx, t.support.lengths, t.support.counts) for t in tasks]

    def snapshot():
        return {k: v.clone() for k, v in model.state_dict().items()}

    def changed(before):
        return {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}

    before = snapshot()
    first = domain_head_step(model, opts["domain"], zs, tasks)
    assert changed(before) == {"domain_head"}
    # f_d gets better at telling the domains apart (ascent on the distinction = descent on L_ad)
    assert domain_head_step(model, opts["domain"], zs, tasks) < first
    before = snapshot()
    anomaly_head_step(model, opts["anomaly"], zs, tasks, 1.0)
    assert changed(before) == {"anomaly_head"}
    before = snapshot()
    grads, _ = meta_gradients(model, tasks, cfg.meta, 1.0)
    outer_step(model, opts["extractor"], grads)
    assert changed(before) == {"extractor"}
    before = snapshot()
    metrics = meta_step(model, opts, tasks, cfg.meta, 1.0)
    assert changed(before) == {"extractor", "anomaly_head", "domain_head"}
    assert set(metrics) == {"domain_head_loss", "anomaly_head_loss", "objective", "loss_c", "loss_ad"}


def test_resolve_pos_weight_and_steps_per_epoch():
    labels = np.array([1, 0, 0, 0], dtype=np.int8)
    assert resolve_pos_weight(0.0, labels) == 3.0 and resolve_pos_weight(2.5, labels) == 2.5
    cfg = _cfg()
    cfg.train.steps_per_epoch = 0
    assert steps_per_epoch(cfg.train, cfg.meta, 100, 1) == 3  # ceil(100 / (2 tasks * 24))
    assert steps_per_epoch(cfg.train, cfg.meta, 100, 2) == 2
    cfg.meta.method = "source_only"
    assert steps_per_epoch(cfg.train, cfg.meta, 100, 1) == 5  # ceil(100 / 24)


def test_predict_proba_keeps_input_order_and_counts_truncation(data):
    cfg = _cfg()
    model = _model(data, cfg)
    seqs = [np.arange(20) % 5, np.array([1]), np.array([2, 3])]
    probs, truncated = predict_proba(model, seqs, batch_size=2, max_len=16)
    single = [predict_proba(model, [s], 1, 16)[0][0] for s in seqs]
    np.testing.assert_allclose(probs, single, atol=1e-6)
    assert truncated == 1 and ((probs > 0) & (probs < 1)).all()


def test_repeated_sequences_are_scored_once_and_get_the_same_score(data):
    cfg = _cfg()
    model = _model(data, cfg)
    seqs = [np.array([1, 2]), np.arange(20) % 5, np.array([1, 2]), np.array([2, 3]), np.arange(20) % 5]
    probs, truncated = predict_proba(model, seqs, batch_size=2, max_len=16)
    distinct = predict_distinct(model, [seqs[0], seqs[1], seqs[3]], 2, 16)
    np.testing.assert_allclose(probs, distinct[[0, 1, 0, 2, 1]], atol=1e-6)
    assert truncated == 2


# ----------------------------------------------------------------------------- the loop


def _run(cfg, data, resume=None):
    states = []
    out = train_loop(cfg, data, lambda metrics, state: states.append(copy.deepcopy(state)), resume=resume)
    return out, states


def test_train_loop_loss_falls_and_is_deterministic(data):
    cfg = _cfg()
    cfg.train.epochs = 4
    out, states = _run(cfg, data)
    history = out["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3] and len(states) == 4
    assert history[-1]["loss_c"] < history[0]["loss_c"]
    assert {"val_f1", "val_auroc", "threshold"} <= set(history[0])
    best = max(history, key=lambda h: (h["val_f1"], h["val_auroc"]))
    assert out["best"]["epoch"] == best["epoch"]
    again, _ = _run(cfg, data)
    assert again["history"] == history


def test_resume_continues_exactly_like_an_uninterrupted_run(data):
    cfg = _cfg()
    straight, _ = _run(cfg, data)
    cfg.train.epochs = 2
    _, states = _run(cfg, data)
    cfg.train.epochs = 3
    resumed, new_states = _run(cfg, data, resume=states[-1])
    assert len(new_states) == 1
    assert resumed["history"] == straight["history"]


def test_target_labels_do_not_change_training(data):
    src, tgt = make_system("SRC", n_seq=160, seed=1), make_system("TGT", n_seq=80, seed=2, shift=0.3)
    hidden = PreparedSystem(tgt.name, tgt.event_ids, tgt.templates, tgt.vectors, tgt.sequences,
                        np.full(len(tgt), -1, dtype=np.int8), tgt.seq_ids)
    cfg = _cfg()
    cfg.train.epochs = 2
    with_labels, _ = _run(cfg, build_train_data([src], tgt, 0.25, seed=0))
    without, _ = _run(cfg, build_train_data([src], hidden, 0.25, seed=0))
    assert with_labels["history"] == without["history"]


def test_second_order_and_source_only_loops_run(data):
    cfg = _cfg(second_order=True)
    cfg.train.epochs = 1
    out, _ = _run(cfg, data)
    assert math.isfinite(out["history"][0]["objective"])
    cfg = _cfg(method="source_only")
    cfg.train.epochs = 2
    torch.manual_seed(0)
    untouched = SmallModel(cfg.model, data.table.vectors).domain_head.state_dict()
    out, _ = _run(cfg, data)
    assert set(out["history"][0]) >= {"loss_c", "val_f1"} and "loss_ad" not in out["history"][0]
    for k, v in out["model"].domain_head.state_dict().items():
        assert torch.equal(v, untouched[k])  # the baseline has no adversarial part


def test_config_validation_of_small_model_fields():
    from fusionlog.config import validate

    cfg = _cfg(method="maml", inner_lr=-0.1)
    cfg.model.hidden = 0
    cfg.train.select_metric = "target_f1"
    problems = [p for p in validate(cfg) if not p.startswith("data")]
    assert sorted(problems) == sorted(["meta.method: 'maml'; allowed: meta, source_only", "model.hidden: 0; must be >= 1",
                                       "meta.inner_lr: -0.1; must be >= 0",
                                       "train.select_metric: 'target_f1'; allowed: f1, auroc"])


def test_stop_reason_patience_perfect_and_budget():
    from fusionlog.meta import stop_reason

    def h(epoch, f1, auroc, loss=0.5):
        return {"epoch": epoch, "val_f1": f1, "val_auroc": auroc, "val_loss": loss}

    hist = [h(0, 0.5, 0.7), h(1, 0.6, 0.7), h(2, 0.6, 0.7), h(3, 0.6, 0.69)]
    assert stop_reason(hist, "f1", patience=3, epochs=10) is None  # epoch 1 was best, 2 epochs since
    assert stop_reason([*hist, h(4, 0.55, 0.8)], "f1", 3, 10) == "no source-val gain for 3 epochs (best epoch 1)"
    assert stop_reason([*hist, h(4, 0.6, 0.71)], "f1", 3, 10) is None  # a tie in F1 broken by AUROC is a gain
    assert stop_reason(hist, "f1", patience=0, epochs=4) == "budget: train.epochs=4"
    perfect = [h(0, 1.0, 1.0, 0.3), h(1, 1.0, 1.0, 0.2), h(2, 1.0, 1.0, 0.25)]
    assert stop_reason(perfect, "f1", 1, 10) == "no source-val gain for 1 epochs (best epoch 1)"  # the lower loss
    assert stop_reason([], "f1", 3, 10) is None


def test_train_loop_stops_early_and_says_why(data):
    cfg = _cfg()
    cfg.meta.method = "source_only"
    cfg.train.epochs, cfg.train.patience = 50, 2
    out = train_loop(cfg, data, lambda metrics, state: None)
    assert out["stopped"] and len(out["history"]) < 50
    assert out["history"][-1]["epoch"] - out["best"]["epoch"] == 2


def test_long_sequences_are_scored_whole_as_the_max_over_windows(data):
    cfg = _cfg()
    model = _model(data, cfg)
    long = np.concatenate([data.source_train[0]] * 12)
    assert len(long) > cfg.model.max_len
    whole, cut = predict_proba(model, [long], 8, cfg.model.max_len)
    assert cut == 1
    from fusionlog.dataset import windows

    parts, _ = windows([long], cfg.model.max_len)
    alone = []
    for part in parts:  # each window scored with the whole sequence's counts
        idx, lengths, _, _ = batch_tensors(model, [part], cfg.model.max_len, "cpu")
        counts = torch.from_numpy(count_features([long], model.n_events))
        with torch.no_grad():
            alone.append(torch.sigmoid(model(idx, lengths, counts)[0]).item())
    assert whole[0] == pytest.approx(max(alone), abs=1e-6)
