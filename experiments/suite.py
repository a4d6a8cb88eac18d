"""The evaluation suite: transfer pairs x methods x seeds in one Ray session -> a saved record -> docs/results.md.

    fusionlog evaluate --suite configs/suite.yaml [key=value ...]
    python -m experiments.suite configs/suite.yaml [--render-only] [key=value ...]

Per pair it prepares the pair's systems once (shared IDF, as the paper), then for every seed runs
  keyword        the label-free keyword rule over the target templates
  source_only    the small model trained on the source(s) only
  meta           the ZeroLog small model, routing off: all target sequences
  fusionlog      ``pipeline.train`` (route -> meta small model -> distillation), the suite's teacher
  fusionlog_all  the same with ``distill.scope=all``: the teacher sees every target sequence
  fusionlog_llm  FusionLog with the LLM teacher on ``llm_pairs``, first seed only
  in_domain      reference trained on the TARGET's own labels (held-out split) -- NOT zero-label
and checks each teacher of ``teachers`` on every source and the target. Every read of a target's
labels goes through ``fusionlog.evaluate``; run configs are the base config with the suite's
partial configs merged over it and ``dataclasses.replace`` for the pair, seed and method.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import yaml

from experiments.aggregate import FUSION_METHODS, METHOD_LABELS, METRICS, aggregate
from experiments.diagnostics import round_precision, training_info
from experiments.plot import write_plot
from experiments.record import RECORD_FILE, Record, machine, merge, now
from experiments.report import render_report, render_table
from fusionlog.config import (FusionLogConfig, FusionLogError, TeacherConfig, build_typed, checked, flatten,
                              load_config, merge_config, overrides_tree)

log = logging.getLogger(__name__)


@dataclass
class SuiteConfig:
    base_config: str
    output_dir: str = "outputs/suite"
    results_md: str = "docs/results.md"
    plot: str = "docs/results_f1.png"
    command: str = "fusionlog evaluate --suite configs/suite.yaml"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pairs: list[dict] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["keyword", "source_only", "meta", "fusionlog", "in_domain"])
    in_domain_test_fraction: float = 0.3
    in_domain_systems: list[str] = field(default_factory=list)  # empty: every target; others prepared beside one
    references: dict = field(default_factory=dict)  # system -> {f1, auroc, what}: the in-domain gate and anchors
    detector_table: dict = field(default_factory=dict)  # target -> {f1, what}: best single detector (issue 15)
    ablations: dict = field(default_factory=dict)  # name -> a partial config over the FusionLog rows (seed 0)
    every_run: dict = field(default_factory=dict)  # a partial config merged into every run
    fusionlog: dict = field(default_factory=dict)  # ... and into the FusionLog rows
    teachers: dict = field(default_factory=dict)  # name -> a teacher section, checked on every pair and seed
    llm_pairs: list[str] = field(default_factory=list)
    llm_run: dict = field(default_factory=dict)  # a partial config for the LLM-teacher row
    optional_pairs: list[dict] = field(default_factory=list)  # run last, each only within optional_after_minutes
    optional_after_minutes: float = 0.0  # >0: LLM rows and optional pairs are skipped past this (reported)


def load_suite(path: str | Path) -> SuiteConfig:
    """Read the suite YAML; ``base_config`` is relative to the suite file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    known = set(SuiteConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FusionLogError(f"{path}: unknown suite keys {unknown}; known: {sorted(known)}")
    if "base_config" not in raw:
        raise FusionLogError(f"{path}: base_config is required")
    cfg = SuiteConfig(**raw)
    base = Path(cfg.base_config)
    cfg.base_config = str(base if base.is_absolute() else (path.parent / base))
    bad = [m for m in cfg.methods if m not in METHOD_LABELS or m == "fusionlog_llm"]
    if bad:
        raise FusionLogError(f"{path}: unknown methods {bad}; allowed: keyword, source_only, meta, fusionlog, "
                             "fusionlog_all, in_domain")
    if not cfg.pairs or not cfg.seeds:
        raise FusionLogError(f"{path}: pairs and seeds must be non-empty")
    for p in [*cfg.pairs, *cfg.optional_pairs]:
        if not p.get("sources") or not p.get("target"):
            raise FusionLogError(f"{path}: each pair needs sources and target, got {p}")
    for key in ("every_run", "fusionlog", "teachers", "llm_run", "references", "detector_table", "ablations"):
        if not isinstance(getattr(cfg, key), dict):
            raise FusionLogError(f"{path}: {key} must be a mapping (a partial config), got {getattr(cfg, key)!r}")
    return cfg


def pair_name(sources: list[str], target: str) -> str:
    return f"{'+'.join(sources)}->{target}"


def _slug(text: str) -> str:
    return text.replace("->", "_to_").replace("+", "_").replace(" ", "_")


def teacher_name(cfg: FusionLogConfig) -> str:
    """How a FusionLog row's teacher is named: ``keyword``, ``committee(keyword+pca)``, ``llm llama_cpp (loglik)``."""
    t = cfg.teacher
    own = ", own rule" if not t.calibrate and t.kind != "keyword" else ""
    if t.kind == "committee":
        return f"committee {t.combine}({'+'.join(t.members)}{own})"
    if t.kind == "llm":
        model = Path(cfg.llm.model_path).name or cfg.llm.model or "SmolLM2-135M-Instruct"
        return f"llm {cfg.llm.backend} {model} ({cfg.llm.mode})"
    return t.kind + own


class Suite:
    """Runs the stages and fills a Record; ``on_progress`` writes the report after each stage."""

    def __init__(self, scfg: SuiteConfig, cli_overrides: Optional[list[str]] = None):
        self.s = scfg
        self.out = Path(scfg.output_dir)
        cli = overrides_tree(cli_overrides or [])
        base = load_config(scfg.base_config)
        self.every = merge_config(merge_config(base, scfg.every_run, "every_run"), cli, "command line")
        self.fusion_base = merge_config(merge_config(self.every, scfg.fusionlog, "fusionlog"), cli, "command line")
        self.llm_base = merge_config(merge_config(self.every, scfg.llm_run, "llm_run"), cli, "command line")
        problems: list[str] = []
        self.teachers = {name: build_typed(TeacherConfig, section, f"teachers.{name}", problems)
                         for name, section in scfg.teachers.items()}
        if problems:
            raise FusionLogError("; ".join(problems))
        self.record = Record(settings={
            "command": scfg.command + ("" if not cli_overrides else " " + " ".join(cli_overrides)),
            "base_config": Path(scfg.base_config).name, "seeds": scfg.seeds, "pairs": scfg.pairs,
            "methods": scfg.methods, "in_domain_test_fraction": scfg.in_domain_test_fraction,
            "every_run": flatten(scfg.every_run) + flatten(cli), "fusionlog": flatten(scfg.fusionlog),
            "llm_pairs": scfg.llm_pairs, "llm_run": flatten(scfg.llm_run), "teachers": list(scfg.teachers),
            "fusionlog_teacher": teacher_name(self.fusion_base), "references": scfg.references,
            "detector_table": scfg.detector_table,
            "ablations": {name: flatten(tree) for name, tree in scfg.ablations.items()}, "plot": scfg.plot})
        self.ablations = {name: merge_config(self.fusion_base, tree, f"ablations.{name}")
                          for name, tree in scfg.ablations.items()}
        self.on_progress: Callable[["Suite", float], None] = lambda suite, seconds: None
        self.t_start = time.time()

    # --- configs

    def prepared_dir(self, sources: list[str], target: str) -> Path:
        return self.out / "prepared" / "_".join(sorted([*sources, target]))

    def cfg(self, base: FusionLogConfig, sources: list[str], target: str, seed: int, run_dir: Path,
            method: Optional[str] = None) -> FusionLogConfig:
        """``base`` for one pair, seed and output folder (and meta.method), checked like a loaded config."""
        cfg = replace(base, data=replace(base.data, sources=list(sources), target=target,
                                         output_dir=str(self.prepared_dir(sources, target))),
                      run=replace(base.run, seed=seed, output_dir=str(run_dir)))
        if method:
            cfg = replace(cfg, meta=replace(cfg.meta, method=method))
        return checked(cfg)

    def run_path(self, pair: str, seed: int, method: str) -> Path:
        return self.out / "runs" / _slug(pair) / f"seed{seed}" / method

    def fresh(self, pair: str, seed: int, method: str) -> Path:
        """A run's folder, emptied: never resume a previous suite's checkpoints."""
        d = self.run_path(pair, seed, method)
        if d.exists():
            shutil.rmtree(d)
        return d

    # --- stages

    def prepare(self, sources: list[str], target: str) -> None:
        from fusionlog.prepare import prepare

        cfg = self.cfg(self.every, sources, target, 0, self.out / "scratch")
        key = Path(cfg.data.output_dir).name
        if key in self.record.prepare_seconds:
            return
        t0 = time.time()
        manifest = prepare(cfg)
        self.record.prepare_seconds[key] = round(time.time() - t0, 1)
        for name, m in manifest["systems"].items():
            system = cfg.data.systems[name]
            grouping = ("pre-parsed sessions" if not m["raw_files"] else
                        f"raw lines parsed by drain3, grouped by {system.grouping.kind}"
                        + (f" ({system.grouping.window_size} lines)" if system.grouping.kind == "count_window" else ""))
            self.record.systems.setdefault(name, {
                "inputs": [*m["raw_files"], *m["session_files"]], "sequences": m["sequences"],
                "anomalous": m["anomalous"], "events": m["events"], "grouping": grouping})
        print(f"[suite] prepared {key} in {self.record.prepare_seconds[key]} s", flush=True)

    def keyword(self, sources: list[str], target: str) -> None:
        """The label-free keyword rule on the target (a baseline, deterministic: one run)."""
        from fusionlog.dataset import load_prepared
        from fusionlog.evaluate import evaluate_scores
        from fusionlog.teachers.keyword import KeywordTeacher

        pair, prepared, t0 = pair_name(sources, target), self.prepared_dir(sources, target), time.time()
        system = load_prepared(prepared, target, read_labels=False)
        rule = KeywordTeacher()
        scores = np.array([1.0 if rule.hit([system.templates[e] for e in s]) else 0.0 for s in system.sequences])
        row = evaluate_scores(prepared, target, scores, 0.5, pair, "keyword")
        self.add_row(row, 0, "-", time.time() - t0, target_sizes(row))

    def small(self, sources: list[str], target: str, seed: int, method: str, data) -> None:
        from fusionlog.evaluate import evaluate_artifact
        from fusionlog.train import fit_small

        pair = pair_name(sources, target)
        run_dir = self.fresh(pair, seed, method)
        cfg = self.cfg(self.every, sources, target, seed, run_dir, method)
        t0 = time.time()
        fit = fit_small(cfg, data, artifact_dir=run_dir / "model")
        row = evaluate_artifact(fit.artifact_dir, cfg.data.output_dir, target)
        self.add_row(row, seed, "-", time.time() - t0, {**source_sizes(data.counts), **target_sizes(row)},
                     **training_info(fit.artifact_dir))

    def fusion(self, sources: list[str], target: str, seed: int, method: str) -> None:
        """One FusionLog run: ``fusionlog`` (the paper's scope), ``fusionlog_all`` or ``fusionlog_llm``."""
        import pyarrow.parquet as pq

        from fusionlog.artifact import ROUTING, load_artifact
        from fusionlog.dataset import load_prepared
        from fusionlog.evaluate import Evaluator
        from fusionlog.pipeline import train
        from fusionlog.scoring import Scorer

        pair = pair_name(sources, target)
        run_dir = self.fresh(pair, seed, method)
        base = self.llm_base if method == "fusionlog_llm" else self.fusion_base
        cfg = self.cfg(base, sources, target, seed, run_dir, "meta")
        if method == "fusionlog_all":
            cfg = replace(cfg, distill=replace(cfg.distill, scope="all"))
        teacher = teacher_name(cfg)
        shared = self.run_path(pair, seed, "fusionlog") / "small"
        reuse = method == "fusionlog_all" and "fusionlog" in self.s.methods and shared.is_dir()
        t0 = time.time()
        summary = train(cfg, skip_prepare=True, small_model=shared if reuse else None)  # same small model: reuse it
        seconds = time.time() - t0
        prepared = cfg.data.output_dir
        system = load_prepared(prepared, target, read_labels=False)
        scored = {}
        for name, path in (("fused", summary["artifact"]), ("small", summary["small_model"])):
            scorer = Scorer(load_artifact(path), Path(path))
            scored[name] = (scorer.score_system(system)[0], scorer.threshold)
        counts = load_artifact(summary["small_model"]).summary.get("data_counts", {})
        evaluator = Evaluator(prepared, target)
        row = evaluator.row(*scored["fused"], pair, method)
        self.add_row(row, seed, teacher, seconds, {**source_sizes(counts), **target_sizes(row)},
                     **training_info(Path(summary["small_model"])))
        general = pq.read_table(Path(summary["artifact"]) / ROUTING, columns=["general"]).column("general")
        general = np.asarray(general.to_pylist(), dtype=bool)  # routing.parquet is in prepared order
        for subset, mask in (("general", general), ("proprietary", ~general), ("all", np.ones_like(general))):
            entry = {"pair": pair, "method": method, "teacher": teacher, "seed": seed, "subset": subset,
                     "sequences": int(mask.sum()), "anomalous": 0, "small_f1": float("nan"), "fused_f1": float("nan")}
            if mask.any():
                rows = np.flatnonzero(mask)
                for name in ("small", "fused"):
                    r = evaluator.row(*scored[name], pair, method, rows=rows)
                    entry[f"{name}_f1"], entry["anomalous"] = r["f1"], r["anomalous"]
            self.record.subsets.append(entry)
        rounds = round_precision(evaluator, Path(summary["artifact"]))
        self.record.routes.append({"pair": pair, "method": method, "teacher": teacher, "seed": seed,
                                   "rule": cfg.routing.rule, "routing": summary["routing"],
                                   "distill": summary.get("distill"), "max_pool": cfg.distill.max_pool,
                                   "teacher_info": summary.get("teacher"), "threshold": summary.get("threshold"),
                                   "round_precision": rounds, **training_info(Path(summary["small_model"]))})

    def check_rules(self, sources: list[str], target: str) -> None:
        """The router's split of the target under both rules (no training); anomaly counts are evaluation only."""
        from fusionlog.dataset import load_prepared
        from fusionlog.evaluate import load_labelled
        from fusionlog.routing import route

        pair, prepared = pair_name(sources, target), self.prepared_dir(sources, target)
        src = np.vstack([load_prepared(prepared, n, read_labels=False).vectors for n in sources])
        tgt = load_prepared(prepared, target, read_labels=False)
        anomalous = load_labelled(prepared, target).labels == 1
        for rule in ("paper", "tiebreak"):
            r = route(tgt.sequences, tgt.vectors, src, replace(self.every.routing, rule=rule))
            self.record.rule_checks.append({"pair": pair, "rule": rule, **r.summary(),
                                            "general_anomalous": int((anomalous & r.general).sum()),
                                            "proprietary_anomalous": int((anomalous & ~r.general).sum())})

    def check_teacher(self, sources: list[str], target: str, seed: int, data, name: str) -> None:
        """A teacher, calibrated as FusionLog calibrates it (source-val labels), on each source and the target.

        Each system is labelled as distillation labels a target: the teacher first sees (``fit``) every
        sequence of that system, without labels; labels are read afterwards, by the evaluator.
        """
        from fusionlog.dataset import load_prepared
        from fusionlog.evaluate import Evaluator
        from fusionlog.pipeline import calibrate_teacher
        from fusionlog.teachers import LabelRequest, make_teacher

        pair, prepared = pair_name(sources, target), self.prepared_dir(sources, target)
        cfg = replace(self.every, teacher=self.teachers[name])
        teacher = make_teacher(cfg.teacher, cfg.llm, cfg.embedding.minilm_path)
        try:
            info = calibrate_teacher(teacher, cfg.teacher, data.table.templates, data, "+".join(sources), seed)
            for system_name, role in [*((n, "source") for n in sources), (target, "target")]:
                system = load_prepared(prepared, system_name, read_labels=False)
                population = [[system.templates[e] for e in seq] for seq in system.sequences]
                teacher.fit(population)
                y_hat, p = teacher.label([LabelRequest(i, system_name, t, []) for i, t in
                                          zip(system.seq_ids, population)])
                ok = np.flatnonzero(y_hat >= 0)
                evaluator = Evaluator(prepared, system_name)
                decided = evaluator.row(y_hat.astype(np.float64), 0.5, pair, "teacher", rows=ok)
                ranked = evaluator.row(p, teacher.threshold, pair, "teacher", rows=ok)
                self.record.teacher_checks.append({
                    **{m: decided[m] for m in ("precision", "recall", "f1")}, "auroc": ranked["auroc"],
                    "pair": pair, "teacher": name, "seed": seed, "system": system_name, "role": role,
                    "sequences": len(ok), "anomalous": decided["anomalous"], "threshold": info.get("threshold")})
        finally:
            teacher.close()

    def in_domain(self, target: str, seed: int) -> None:
        """Reference: the small model trained on the TARGET's own labels (70%), scored on the held-out 30%."""
        from fusionlog.artifact import load_artifact
        from fusionlog.dataset import build_train_data, stratified_split
        from fusionlog.evaluate import load_labelled, results_row
        from fusionlog.train import fit_small

        pair = f"{target} (in-domain)"
        run_dir = self.fresh(pair, seed, "in_domain")
        # the config needs some other system as its target to validate; training reads only the TrainData below
        cfg = self.cfg(self.every, [target], self._other_system(target), seed, run_dir, "source_only")
        t0 = time.time()
        full = load_labelled(self.out / "prepared" / self._prepared_for(target), target)  # NOT zero-label, by design
        train_rows, test_rows = stratified_split(full.labels, self.s.in_domain_test_fraction, seed)
        part = full.subset(train_rows)
        data = build_train_data([part], part, cfg.train.val_fraction, seed)
        data.target_name = f"{target}-heldout"
        fit = fit_small(cfg, data, artifact_dir=run_dir / "model")
        test = full.subset(test_rows)
        art = load_artifact(fit.artifact_dir)
        probs, _ = art.score(art.reindex(test)[0])
        row = results_row(pair, "in_domain", test.labels, probs, art.threshold)
        sizes = {**source_sizes(data.counts), "target_test_sequences": len(test),
                 "target_test_anomalous": int((test.labels == 1).sum())}
        self.add_row(row, seed, "-", time.time() - t0, sizes, zero_label=False, **training_info(fit.artifact_dir))

    def _prepared_for(self, target: str) -> str:
        for p in self.s.pairs:
            if p["target"] == target or target in p["sources"]:
                return self.prepared_dir(p["sources"], p["target"]).name
        other = self._other_system(target)
        self.prepare([other], target)  # a reference system no pair uses: prepared beside one that is
        return self.prepared_dir([other], target).name

    def _other_system(self, name: str) -> str:
        return next(n for p in self.s.pairs for n in [*p["sources"], p["target"]] if n != name)

    def ablate(self, sources: list[str], target: str) -> None:
        """Each ablation of ``ablations`` on seed 0: FusionLog with one switch changed, reusing the seed's small
        model whenever the switch leaves it the same (the run hash says), so rows differ in distillation only."""
        from fusionlog.artifact import load_artifact
        from fusionlog.dataset import load_prepared
        from fusionlog.evaluate import Evaluator
        from fusionlog.pipeline import train
        from fusionlog.scoring import Scorer
        from fusionlog.train import run_hash

        pair, seed = pair_name(sources, target), self.s.seeds[0]
        evaluator = Evaluator(self.prepared_dir(sources, target), target)
        system = load_prepared(self.prepared_dir(sources, target), target, read_labels=False)
        for name, base in self.ablations.items():
            run_dir = self.fresh(pair, seed, f"ablation-{_slug(name)}")
            cfg = self.cfg(base, sources, target, seed, run_dir, "meta")
            wanted = _hash_for(cfg, run_hash)  # the FusionLog row's small model, or the meta row's (routing off)
            candidates = [self.run_path(pair, seed, "fusionlog") / "small", self.run_path(pair, seed, "meta") / "model"]
            shared = next((c for c in candidates if c.is_dir() and load_artifact(c).summary.get("run_hash") == wanted),
                          None)
            reuse = shared is not None
            t0 = time.time()
            summary = train(cfg, skip_prepare=True, small_model=shared)
            scorer = Scorer(load_artifact(summary["artifact"]), Path(summary["artifact"]))
            row = evaluator.row(scorer.score_system(system)[0], scorer.threshold, pair, "ablation")
            d = summary.get("distill") or {}
            self.record.ablation_rows.append({
                "pair": pair, "ablation": name, "seed": seed, "f1": row["f1"], "auroc": row["auroc"],
                "precision": row["precision"], "recall": row["recall"], "seconds": time.time() - t0,
                "small_model_reused": reuse, "routing": summary["routing"],
                "clean": [(r["clean"] - r["clean_anomalous"], r["clean_anomalous"]) for r in d.get("rounds", [])],
                "pseudo_labels": summary.get("pseudo_labels"), "threshold": summary.get("threshold")})
            print(f"[suite] {pair} ablation {name}: F1={row['f1']:.3f} AUROC={row['auroc']:.3f}", flush=True)

    def diagnose(self, sources: list[str], target: str) -> None:
        """Why a source-only model ranks the target as it does (experiments/diagnostics.py; evaluation only)."""
        from experiments.diagnostics import diagnose

        pair = pair_name(sources, target)
        path = self.run_path(pair, self.s.seeds[0], "source_only") / "model"
        if path.is_dir():
            self.record.diagnostics.append({"pair": pair, **diagnose(
                self.prepared_dir(sources, target), sources, target, path, self.every.routing)})

    # --- bookkeeping

    def add_row(self, row: dict, seed: int, teacher: str, seconds: float, sizes: dict, zero_label: bool = True,
                **extra) -> None:
        kept = {"pair": row["pair"], "method": row["method"], "seed": seed, "teacher": teacher,
                "zero_label": zero_label, "threshold": row["threshold"], "sizes": sizes, "seconds": seconds,
                **{m: float(row[m]) for m in METRICS}, **extra}
        self.record.rows.append(kept)
        print(f"[suite] {kept['pair']} seed {seed} {kept['method']} [{teacher}]: F1={kept['f1']:.3f} "
              f"AUROC={kept['auroc']:.3f} ({seconds:.0f} s)", flush=True)

    def guarded(self, what: dict, fn: Callable, *args) -> None:
        """A failed run is tried once more, then becomes an error row (reported), never a dead suite.

        The record and report are written after every stage, so a suite stopped midway keeps all it measured.
        The retry is for transient failures (a Ray worker that missed a health check on a loaded
        machine); a FusionLogError is the input's or config's fault and would fail again, so it is not retried.
        """
        for attempt in (1, 2):
            try:
                fn(*args)
                break
            except Exception as exc:  # noqa: BLE001 - reported in the table
                if attempt == 1 and not isinstance(exc, FusionLogError):
                    log.warning("suite run failed, retrying once: %s: %s: %s", what, type(exc).__name__, exc)
                    print(f"[suite] retrying {what} after {type(exc).__name__}: {exc}", flush=True)
                    continue
                log.exception("suite run failed: %s", what)
                self.record.rows.append({**what, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                print(f"[suite] FAILED {what}: {type(exc).__name__}: {exc}", flush=True)
                break
        self.on_progress(self, self.elapsed())

    def run_pair(self, p: dict, ablate: bool = True) -> None:
        from fusionlog.dataset import load_train_data

        sources, target = list(p["sources"]), p["target"]
        pair = pair_name(sources, target)
        if "keyword" in self.s.methods:
            self.guarded({"pair": pair, "method": "keyword", "seed": 0, "teacher": "-"}, self.keyword, sources, target)
        self.guarded({"pair": pair, "method": "routing rules", "seed": 0, "teacher": "-"}, self.check_rules, sources,
                     target)
        for seed in self.s.seeds:
            data = load_train_data(self.prepared_dir(sources, target), sources, target,
                                   self.every.train.val_fraction, seed)
            for method in ("source_only", "meta"):
                if method in self.s.methods:
                    self.guarded({"pair": pair, "method": method, "seed": seed, "teacher": "-"}, self.small,
                                 sources, target, seed, method, data)
            for name in self.teachers if seed == self.s.seeds[0] else []:  # label-free: the same every seed
                self.guarded({"pair": pair, "method": "teacher", "seed": seed, "teacher": name},
                             self.check_teacher, sources, target, seed, data, name)
            for method in FUSION_METHODS:
                if method in self.s.methods:
                    self.guarded({"pair": pair, "method": method, "seed": seed, "teacher": "-"},
                                 self.fusion, sources, target, seed, method)
        if "source_only" in self.s.methods:
            self.guarded({"pair": pair, "method": "diagnostics", "seed": 0, "teacher": "-"}, self.diagnose, sources,
                         target)
        if ablate and self.ablations and len(sources) == 1:
            self.guarded({"pair": pair, "method": "ablations", "seed": self.s.seeds[0], "teacher": "-"}, self.ablate,
                         sources, target)
        print(f"[suite] pair {pair} done at {self.elapsed():.0f} s", flush=True)

    def elapsed(self) -> float:
        return time.time() - self.t_start

    def optional_ok(self, what: str) -> bool:
        """Optional stages run only within ``optional_after_minutes``; a skip is recorded for the report."""
        limit = self.s.optional_after_minutes
        if limit and self.elapsed() > 60 * limit:
            self.record.skipped.append(f"{what}: skipped, the suite had run {self.elapsed() / 60:.1f} min "
                                       f"(optional_after_minutes={limit})")
            print(f"[suite] {self.record.skipped[-1]}", flush=True)
            return False
        return True

    def run(self) -> Record:
        """In-domain references first (the small model's gate), then the pairs, then the optional stages."""
        from fusionlog.ray_runtime import ensure_ray

        self.t_start = time.time()
        ensure_ray(self.every.ray, self.every.run.progress)  # ONE Ray session for the whole suite
        for p in self.s.pairs:
            self.prepare(p["sources"], p["target"])
        if "in_domain" in self.s.methods:
            for target in self.s.in_domain_systems or dict.fromkeys(p["target"] for p in self.s.pairs):
                for seed in self.s.seeds:
                    self.guarded({"pair": f"{target} (in-domain)", "method": "in_domain", "seed": seed,
                                  "teacher": "-", "zero_label": False}, self.in_domain, target, seed)
        for p in self.s.pairs:
            self.run_pair(p)
        for p in self.s.pairs:  # the LLM teacher: the slowest, and optional
            name = pair_name(p["sources"], p["target"])
            if name in self.s.llm_pairs and self.optional_ok("LLM row " + name):
                self.guarded({"pair": name, "method": "fusionlog_llm", "seed": self.s.seeds[0], "teacher": "llm"},
                             self.fusion, list(p["sources"]), p["target"], self.s.seeds[0], "fusionlog_llm")
        for p in self.s.optional_pairs:
            if self.optional_ok("pair " + pair_name(p["sources"], p["target"])):
                self.prepare(p["sources"], p["target"])
                self.run_pair(p, ablate=False)  # ablations: on the required pairs only
        self.record.seconds = self.elapsed()
        return self.record


def _hash_for(cfg: FusionLogConfig, run_hash) -> str:
    """The run hash ``cfg`` would give its small model (routing decides the target rows, so route first)."""
    from fusionlog.dataset import build_train_data
    from fusionlog.pipeline import route_target

    sources, target, routing = route_target(cfg)
    data = build_train_data(sources, target, cfg.train.val_fraction, cfg.run.seed,
                            target_rows=np.flatnonzero(routing.general))
    return run_hash(cfg, data)


def source_sizes(counts: dict) -> dict:
    return {"source_train_sequences": counts.get("source_train"), "source_train_anomalous":
            counts.get("source_train_anomalous"), "source_val_sequences": counts.get("source_val"),
            "source_val_anomalous": counts.get("source_val_anomalous")}


def target_sizes(row: dict) -> dict:
    return {"target_sequences": row["target_sequences"], "target_anomalous": row["anomalous"]}


def write(rec: Record, scfg: SuiteConfig) -> None:
    """The record, then the report and the plot from it."""
    rec.save(Path(scfg.output_dir) / RECORD_FILE)
    Path(scfg.results_md).parent.mkdir(parents=True, exist_ok=True)
    Path(scfg.results_md).write_text(render_report(rec))
    if scfg.plot:
        write_plot(rec, scfg.plot)


def run_suite(path: str | Path, overrides: Optional[list[str]] = None, render_only: bool = False,
              merge_records: Optional[list[str]] = None) -> int:
    """Run the suite in ``path`` (or, ``render_only``, write the report again from its saved record; or merge
    the records of parts run side by side into its record and write the report)."""
    scfg = load_suite(path)
    if merge_records:
        rec = merge({p: Record.load(Path(p)) for p in merge_records})
        write(rec, scfg)
        print(f"[suite] {len(merge_records)} records merged into {scfg.output_dir}/{RECORD_FILE}; "
              f"wrote {scfg.results_md}", flush=True)
        return 0
    if render_only:
        rec = Record.load(Path(scfg.output_dir) / RECORD_FILE)
        if rec.partial:
            raise FusionLogError(f"{scfg.output_dir}/{RECORD_FILE} is from a suite that did not finish; rerun it")
        write(rec, scfg)
        print(f"[suite] report written again from the saved record: {scfg.results_md}", flush=True)
        return 0
    suite = Suite(scfg, overrides)
    suite.record.run_info = {"date": now(), "machine": ""}

    def progress(s: Suite, seconds: float) -> None:
        s.record.seconds = seconds
        s.record.run_info["machine"] = machine()
        write(s.record, scfg)

    suite.on_progress = progress
    print(f"[suite] {len(scfg.pairs)} pairs x seeds {scfg.seeds}; methods {scfg.methods}", flush=True)
    rec = suite.run()
    rec.partial = False
    rec.run_info["machine"] = machine()
    write(rec, scfg)
    print(render_table(aggregate(rec.rows)))
    print(f"[suite] done in {rec.seconds / 60:.1f} min; wrote {scfg.results_md}", flush=True)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="FusionLog evaluation suite -> docs/results.md")
    parser.add_argument("suite", help="suite YAML, e.g. configs/suite.yaml")
    parser.add_argument("--render-only", action="store_true", help="write the report again from the saved record")
    parser.add_argument("--merge", nargs="+", metavar="RECORD",
                        help="saved records of parts of this suite run side by side (e.g. one per pair): merge them "
                             "into this suite's record and write the report")
    parser.add_argument("overrides", nargs="*", help="key.sub=value, applied to every run")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_suite(args.suite, args.overrides, args.render_only, args.merge)


if __name__ == "__main__":
    sys.exit(main())
