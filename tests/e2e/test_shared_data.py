"""Every session-grade file of ../shared/data, read through the real loaders; counts from its README."""
from collections import Counter

import pytest
import yaml

from fusionlog.config import load_config
from fusionlog.prepare import ingest_system


def _load(tmp_path, name, body, **cfg_over):
    tree = {"data": {"sources": ["Other"], "target": name, "output_dir": str(tmp_path / "out"),
                     "systems": {name: body, "Other": {"inputs": [{"path": "x", "shape": "sessions",
                                                                   "sequence_kind": "templates"}]}}},
            "parsing": {"parallel": False}, **cfg_over}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    cfg = load_config(path)
    return ingest_system(cfg.data.systems[name], cfg.parsing, cfg.ray, cfg.run.progress)


def _events(data):
    return sum(len(e) for e in data.sequences.event_ids)


def krone(d):
    return {"path": str(d / "HDFS/krone_HDFS_20k_block_sequences.csv.gz"), "shape": "sessions",
            "id_column": "BlockId", "sequence_format": "list",
            "templates_path": str(d / "HDFS/krone_HDFS.log_templates.csv")}


def deeploglizer(d):
    return {"path": str(d / "HDFS/deeploglizer_HDFS_100k_block_sessions.csv.gz"), "shape": "sessions",
            "id_column": "BlockId", "sequence_column": "EventTemplates", "sequence_kind": "templates",
            "sequence_format": "list"}


def test_hdfs_krone_sessions(tmp_path, shared_data):
    data = _load(tmp_path, "HDFS", {"inputs": [krone(shared_data)]})
    assert (data.manifest.sequences, data.manifest.anomalous) == (20000, 579)
    assert _events(data) == 388_387 and data.manifest.events <= 47


def test_hdfs_overlapping_files_deduplicated_by_block(tmp_path, shared_data):
    data = _load(tmp_path, "HDFS", {"inputs": [krone(shared_data), deeploglizer(shared_data)]})
    assert data.manifest.session_rows_skipped == {"duplicate_session": 277}
    assert data.manifest.sequences == 20000 + 7940 - 277
    alone = _load(tmp_path, "HDFS", {"inputs": [deeploglizer(shared_data)]})
    assert (alone.manifest.sequences, alone.manifest.anomalous, _events(alone)) == (7940, 313, 104_815)


def test_hdfs_graphlog_anomalies(tmp_path, shared_data):
    body = {"inputs": [{"path": str(shared_data / "HDFS/graphlog_data_anomaly.csv.gz"), "shape": "sessions",
                        "id_column": "BlockId", "templates_path": str(shared_data / "HDFS/graphlog_log_templates.csv"),
                        "template_id_column": "EventID"}]}
    data = _load(tmp_path, "HDFS", body)
    assert (data.manifest.sequences, data.manifest.anomalous, _events(data)) == (16838, 16838, 288_250)


def test_hdfs_raw_20000_lines_with_block_labels(tmp_path, shared_data):
    body = {"inputs": [{"path": str(shared_data / "HDFS/HDFS_20000.log.gz"),
                        "label_file": str(shared_data / "HDFS/HDFS_20000_block_labels.csv")}]}
    data = _load(tmp_path, "HDFS", body)
    m = data.manifest
    assert (m.lines_read, m.lines_parsed, m.sequences, m.anomalous, m.unlabelled) == (20000, 20000, 1782, 43, 0)


def test_bgl_20k_raw_windows(tmp_path, shared_data):
    data = _load(tmp_path, "BGL", {"inputs": [{"path": str(shared_data / "BGL/BGL_20k_sample.log.gz")}]})
    m = data.manifest
    assert (m.lines_read, m.lines_parsed, m.sequences, m.anomalous) == (20000, 20000, 1000, 165)


@pytest.mark.parametrize("split,base,rows,anomalous,events", [("train", 1, 6000, 1000, 397_196),
                                                               ("valid", 0, 12000, 6000, 627_082)])
def test_bgl_mlog_windows_id_mapping(tmp_path, shared_data, split, base, rows, anomalous, events):
    body = {"inputs": [{"path": str(shared_data / f"BGL/mlog_BGL_windows_{split}.csv.gz"), "shape": "sessions",
                        "sequence_column": "Sequence", "label_column": "label", "template_ids_are_rows": True,
                        "id_base": base, "templates_path": str(shared_data / "BGL/mlog_BGL.log_templates.csv")}]}
    data = _load(tmp_path, "BGL", body)
    assert (data.manifest.sequences, data.manifest.anomalous, _events(data)) == (rows, anomalous, events)
    # With the README's mapping, "data TLB error interrupt" occurs in anomalous windows only.
    tlb = next(i for i, t in data.templates.items() if t == "data TLB error interrupt")
    labels = Counter(lab for ev, lab in zip(data.sequences.event_ids, data.sequences.labels) if tlb in ev)
    assert labels[1] > 0 and labels[0] == 0


def test_openstack_graphlog_sessions(tmp_path, shared_data):
    def spec(f, label):
        return {"path": str(shared_data / f"OpenStack/{f}"), "shape": "sessions", "has_header": False,
                "sequence_column": "0", "label_column": "", "fixed_label": label,
                "templates_path": str(shared_data / "OpenStack/graphlog_events.log_templates.csv")}
    data = _load(tmp_path, "OpenStack", {"inputs": [spec("graphlog_sequence_normal.csv.gz", 0),
                                                    spec("graphlog_sequence_abnormal.csv", 1)]})
    assert (data.manifest.sequences, data.manifest.anomalous, _events(data)) == (6500, 500, 174_625)


def test_openstack_raw_by_instance(tmp_path, shared_data):
    labels = str(shared_data / "OpenStack/anomaly_labels.txt")
    ab = _load(tmp_path, "OpenStack", {"label": {"path": labels}, "inputs": [
        {"path": str(shared_data / "OpenStack/openstack_abnormal_nova-compute_by_instance.log.gz")}]})
    assert (ab.manifest.lines_read, ab.manifest.sequences, ab.manifest.anomalous) == (4904, 198, 4)
    assert sum(len(e) for e, y in zip(ab.sequences.event_ids, ab.sequences.labels) if y == 1) == 100
    normal = _load(tmp_path, "OpenStack", {"label": {"path": labels}, "inputs": [
        {"path": str(shared_data / "OpenStack/openstack_normal1_nova-compute_by_instance.log.gz")}]})
    assert (normal.manifest.lines_read, normal.manifest.sequences, normal.manifest.anomalous) == (13865, 557, 0)
    assert normal.manifest.grouping["label_ids_not_in_log"] == 4
