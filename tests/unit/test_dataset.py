"""Loading prepared Parquet, merging event tables, the zero-label discipline, padding."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.unit._synthetic import make_system, write_prepared
from fusionlog.dataset import (PreparedSystem, build_train_data, load_prepared, merge_systems, pad_batch,
                               stratified_split, unique_sequences)


def _tiny(name: str, ids: list[str], dim: int = 2) -> PreparedSystem:
    vectors = np.arange(len(ids) * dim, dtype=np.float32).reshape(len(ids), dim)
    return PreparedSystem(name, ids, [f"t {i}" for i in ids], vectors,
                      [np.array([0, 1], dtype=np.int64), np.array([1], dtype=np.int64)],
                      np.array([1, 0], dtype=np.int8), ["s0", "s1"])


def test_load_system_round_trip(tmp_path):
    system = make_system("SRC", n_seq=20, seed=3)
    write_prepared(tmp_path, system)
    loaded = load_prepared(tmp_path, "SRC", read_labels=True)
    assert loaded.event_ids == system.event_ids and loaded.templates == system.templates
    np.testing.assert_array_equal(loaded.vectors, system.vectors)
    assert loaded.vectors.dtype == np.float32 and loaded.dim == 8
    assert all(np.array_equal(a, b) and a.dtype == np.int64 for a, b in zip(loaded.sequences, system.sequences))
    np.testing.assert_array_equal(loaded.labels, system.labels)
    assert loaded.seq_ids == system.seq_ids


def test_target_labels_are_never_read(tmp_path):
    """read_labels=False works on a file with no label column at all: the column is not touched."""
    folder = write_prepared(tmp_path, make_system("TGT", n_seq=10, seed=4))
    table = pq.read_table(folder / "sequences.parquet")
    pq.write_table(table.drop_columns(["label"]), folder / "sequences.parquet")
    loaded = load_prepared(tmp_path, "TGT", read_labels=False)
    assert loaded.labels.tolist() == [-1] * 10
    with pytest.raises(ValueError, match="missing column.*label"):
        load_prepared(tmp_path, "TGT", read_labels=True)


def test_load_system_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="fusionlog prepare"):
        load_prepared(tmp_path, "NOPE", read_labels=False)
    system = make_system("BAD", n_seq=5, seed=5)
    system.sequences[0] = np.array([0, 1], dtype=np.int64)
    folder = write_prepared(tmp_path, system)
    table = pq.read_table(folder / "events.parquet")
    pq.write_table(table.slice(1), folder / "events.parquet")  # drop event 0, still referenced
    with pytest.raises(ValueError, match="not in events.parquet"):
        load_prepared(tmp_path, "BAD", read_labels=False)


def test_merge_systems_dedupes_shared_events_and_reindexes():
    a, b = _tiny("A", ["x", "y"]), _tiny("B", ["y", "z"])
    table, (ma, mb) = merge_systems([a, b])
    assert table.event_ids == ["x", "y", "z"]
    np.testing.assert_array_equal(table.vectors, [[0, 1], [2, 3], [2, 3]])  # z: B's row 1
    assert [table.event_ids[i] for i in mb.sequences[0]] == ["y", "z"]
    assert [table.event_ids[i] for i in ma.sequences[0]] == ["x", "y"]
    assert ma.vectors is table.vectors and mb.labels is b.labels


def test_merge_systems_refuses_differing_dims():
    with pytest.raises(ValueError, match=r"A has d=2, B has d=3"):
        merge_systems([_tiny("A", ["x"]), _tiny("B", ["y"], dim=3)])


def test_stratified_split_keeps_both_classes_in_both_parts():
    labels = np.array([1] * 4 + [0] * 16, dtype=np.int8)
    train, val = stratified_split(labels, 0.25, seed=0)
    assert len(val) == 5 and labels[val].sum() == 1 and labels[train].sum() == 3
    assert set(train) | set(val) == set(range(20)) and not set(train) & set(val)
    assert np.array_equal(stratified_split(labels, 0.25, seed=0)[1], val)
    few = np.array([1, 1, 0, 0, 0], dtype=np.int8)  # round(2 * 0.2) = 0 would leave val without anomalies
    train, val = stratified_split(few, 0.2, seed=0)
    assert few[val].tolist().count(1) == 1 and few[train].tolist().count(1) == 1


def test_build_train_data_holds_no_target_labels():
    src, tgt = make_system("SRC", n_seq=40, seed=1), make_system("TGT", n_seq=30, seed=2)
    hidden = PreparedSystem(tgt.name, tgt.event_ids, tgt.templates, tgt.vectors, tgt.sequences,
                        np.full(len(tgt), -1, dtype=np.int8), tgt.seq_ids)
    with_labels, without = build_train_data([src], tgt, 0.25, 0), build_train_data([src], hidden, 0.25, 0)
    assert with_labels.fingerprint() == without.fingerprint()
    assert len(with_labels.target) == 30 and with_labels.counts["source_val"] == 10
    assert set(with_labels.source_val_labels.tolist()) == {0, 1}
    subset = build_train_data([src], tgt, 0.25, 0, target_rows=np.array([0, 5]))
    assert len(subset.target) == 2


def test_build_train_data_refuses_bad_source():
    tgt = make_system("TGT", n_seq=10, seed=2)
    single = make_system("SRC", n_seq=10, seed=1)
    single.labels[:] = 0
    with pytest.raises(ValueError, match="0 anomalous and 10 normal"):
        build_train_data([single], tgt, 0.25, 0)
    unlabelled = make_system("SRC", n_seq=10, seed=1)
    unlabelled.labels[:] = -1
    with pytest.raises(ValueError, match="no labelled sequences"):
        build_train_data([unlabelled], tgt, 0.25, 0)
    with pytest.raises(ValueError, match="at least one source"):
        build_train_data([], tgt, 0.25, 0)
    with pytest.raises(ValueError, match="d=8.*d=4"):
        build_train_data([make_system("SRC", n_seq=10, seed=1)], make_system("TGT", dim=4), 0.25, 0)


def test_unique_sequences_keeps_first_appearances_and_maps_every_input():
    seqs = [np.array([1, 2]), np.array([3]), np.array([1, 2]), np.array([], dtype=np.int64), np.array([3]),
            np.array([1, 0], dtype=np.int32), np.array([1])]  # int32 [1, 0] and int64 [1] share their bytes
    distinct, inverse = unique_sequences(seqs)
    assert [d.tolist() for d in distinct] == [[1, 2], [3], [], [1, 0], [1]]
    assert inverse.tolist() == [0, 1, 0, 2, 1, 3, 4]
    assert unique_sequences([])[1].shape == (0,)


def test_pad_batch_windows_start_at_random_only_in_training():
    seqs = [np.arange(10), np.array([4, 5])]
    idx, lengths, truncated = pad_batch(seqs, pad_index=99, max_len=4, rng=np.random.default_rng(3))
    start = int(idx[0, 0])
    assert idx[0].tolist() == list(range(start, start + 4)) and idx[1].tolist() == [4, 5, 99, 99]
    assert lengths.tolist() == [4, 2] and truncated == 1
    assert pad_batch(seqs, 99, 4)[0][0].tolist() == [0, 1, 2, 3]


def test_pad_batch_counts_truncation_and_pads_empty():
    idx, lengths, truncated = pad_batch([np.array([1, 2, 3, 4]), np.array([], dtype=np.int64), np.array([7])],
                                        pad_index=9, max_len=3)
    assert truncated == 1
    assert lengths.tolist() == [3, 1, 1]
    assert idx.tolist() == [[1, 2, 3], [9, 9, 9], [7, 9, 9]]
