"""How the classic label-free detectors do on our corpora, each fitted on its own system's sessions.

    PYTHONPATH=. python experiments/detector_check.py [--data ../shared/data] [--systems HDFS OpenStack ...]

Every detector is fitted and decides without labels; labels are read only to score the result
(F1/precision/recall at the detector's own decision, AUROC of its score).  Prints a markdown table
and, per system, what Invariant Mining's search did.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fusionlog.config import InputSpec
from fusionlog.detectors import (Detector, InvariantMining, IsolationForestDetector, PCADetector, count_matrix,
                                 fit_vocabulary)
from fusionlog.evaluate import auroc, precision_recall_f1
from fusionlog.sessions import load_sessions

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def system_inputs(data: Path) -> dict[str, list[InputSpec]]:
    """The session files of each system, declared as configs/shared.yaml does (MLog ids: data README)."""
    hdfs, osk, bgl = data / "HDFS", data / "OpenStack", data / "BGL"
    openstack = [InputSpec(path=str(osk / name), shape="sessions", has_header=False, sequence_column="0",
                           templates_path=str(osk / "graphlog_events.log_templates.csv"), label_column="",
                           fixed_label=label)
                 for name, label in (("graphlog_sequence_normal.csv.gz", 0), ("graphlog_sequence_abnormal.csv", 1))]

    def mlog(split: str, id_base: int) -> InputSpec:
        return InputSpec(path=str(bgl / f"mlog_BGL_windows_{split}.csv.gz"), shape="sessions",
                         sequence_column="Sequence", templates_path=str(bgl / "mlog_BGL.log_templates.csv"),
                         template_ids_are_rows=True, id_base=id_base, label_column="label")

    return {
        "HDFS": [InputSpec(path=str(hdfs / "krone_HDFS_20k_block_sequences.csv.gz"), shape="sessions",
                           id_column="BlockId", sequence_column="EventSequence", sequence_format="list",
                           templates_path=str(hdfs / "krone_HDFS.log_templates.csv"), template_id_column="EventId",
                           label_column="Label")],
        "OpenStack": openstack,
        "BGL-MLog-train": [mlog("train", 1)],
        "BGL-MLog-train+valid": [mlog("train", 1), mlog("valid", 0)],
    }


def load(specs: list[InputSpec]) -> tuple[list[list[str]], np.ndarray]:
    """Event-id sequences and labels of one system (labels for scoring only)."""
    seen: set[str] = set()
    templates: dict[str, str] = {}
    sequences, labels = [], []
    for spec in specs:
        seqs, report = load_sessions(spec, seen, templates)
        if report.skipped:
            print(f"  {Path(spec.path).name}: skipped {dict(report.skipped)}")
        sequences.extend(seqs.event_ids)
        labels.extend(seqs.labels)
    return sequences, np.asarray(labels, dtype=np.int64)


def detectors() -> dict[str, Detector]:
    return {"PCA (Q, alpha=0.001)": PCADetector(), "Invariant Mining (<=3 events)": InvariantMining(),
            "Isolation Forest (auto)": IsolationForestDetector()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--systems", nargs="*", default=None)
    args = parser.parse_args()
    inputs = system_inputs(args.data)
    rows, notes = [], []
    for system in args.systems or list(inputs):
        sequences, y = load(inputs[system])
        counts, _ = count_matrix(sequences, fit_vocabulary(sequences))
        size = f"{len(y):,} ({int(y.sum()):,} anom.) x {counts.shape[1]:,} events"
        flag_all = precision_recall_f1(y, np.ones_like(y))["f1"]
        for name, detector in detectors().items():
            start = time.perf_counter()
            score = detector.fit(counts).score(counts)
            decision = detector.decide(counts)
            seconds = time.perf_counter() - start
            m = precision_recall_f1(y, decision)
            rows.append(f"| {system} | {size} | {name} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} "
                        f"| {auroc(y, score):.3f} | {decision.mean():.3f} | {seconds:.1f} |")
            if isinstance(detector, InvariantMining):
                notes.append(f"- {system}: {len(detector.invariants)} invariants; {detector.report}")
        rows.append(f"| {system} | | flag everything | {flag_all:.3f} | | | | 1.000 | |")
    print("| system | sequences | detector | F1 | P | R | AUROC | flagged | fit+score s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nInvariant Mining search:\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
