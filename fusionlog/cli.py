"""``fusionlog <command> --config x.yaml key.sub=value ...`` — thin over the library functions."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fusionlog.config import ConfigError, FusionLogError, load_config, read_yaml

log = logging.getLogger("fusionlog")


def _prepare(cfg, args) -> int:
    from fusionlog.prepare import prepare

    manifest = prepare(cfg)
    print(format_manifest(manifest))
    print(f"outputs: {cfg.data.output_dir}")
    return 0


def format_manifest(manifest: dict) -> str:
    """A short table of what ingestion read, skipped and produced, per system."""
    rows = ["system      lines read  parsed  skipped  session rows  sequences  anomalous  events"]
    for name, m in manifest["systems"].items():
        skipped = sum(m["lines_skipped"].values()) + sum(m["session_rows_skipped"].values())
        rows.append(f"{name:<11} {m['lines_read']:>10}  {m['lines_parsed']:>6}  {skipped:>7}  "
                    f"{m['session_rows_read']:>12}  {m['sequences']:>9}  {m['anomalous']:>9}  {m['events']:>6}")
        reasons = {**m["lines_skipped"], **m["session_rows_skipped"]}
        if reasons:
            rows.append(f"{'':<11} skipped by reason: {json.dumps(reasons)}")
        if m["grouping"].get("label_rows_skipped"):
            rows.append(f"{'':<11} label-file rows skipped (label.on_bad_rows=skip): "
                        f"{m['grouping']['label_rows_skipped']}")
    e = manifest["embedding"]
    rows.append(f"embedding: {e['encoder']} d={e['dim']} events={e['events']} oov tokens={e['oov_tokens']}/"
                f"{e['tokens']} ({e['oov_rate']:.1%})")
    return "\n".join(rows)


def _train_small(cfg, args) -> int:
    from fusionlog.dataset import load_train_data
    from fusionlog.pipeline import export_parsing_state
    from fusionlog.ray_runtime import ensure_ray
    from fusionlog.train import fit_small

    data = load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction, cfg.run.seed)
    ensure_ray(cfg.ray, cfg.run.progress)
    fit = fit_small(cfg, data, artifact_dir=args.artifact,
                    extras=lambda folder: export_parsing_state(cfg.data.output_dir, cfg.data.target, folder))
    if fit.resumed_after is not None:
        print(f"run {fit.name}: resumed after epoch {fit.resumed_after} from its last checkpoint")
    print(f"run {fit.name}: best epoch {fit.best_epoch}, source-val {json.dumps(fit.best_metrics)}")
    print(f"artifact: {fit.artifact_dir}")
    return 0


def _train(cfg, args) -> int:
    from fusionlog.pipeline import train

    summary = train(cfg, skip_prepare=args.skip_prepare)
    print(json.dumps({k: summary[k] for k in ("routing", "distill") if k in summary}, indent=2, default=float))
    print(f"fused artifact: {summary['artifact']}")
    return 0


def _evaluate(cfg, args) -> int:
    from fusionlog.evaluate import evaluate_artifact

    artifact = args.artifact or str(Path(cfg.run.output_dir) / "fused")
    row = evaluate_artifact(artifact, cfg.data.output_dir, cfg.data.target)
    print(format_row(row))
    return 0


def format_row(row: dict) -> str:
    """One evaluation row, metrics first, data sizes after."""
    head = (f"{row['pair']} [{row['method']}] P={row['precision']:.3f} R={row['recall']:.3f} F1={row['f1']:.3f} "
            f"AUROC={row['auroc']:.3f} (threshold {row['threshold']:.3f})")
    sizes = {k: v for k, v in row.items() if k not in ("pair", "method", "precision", "recall", "f1", "auroc",
                                                         "threshold")}
    return head + "\n  " + json.dumps(sizes, default=float)


def _tune(cfg, args) -> int:
    from fusionlog.ray_runtime import ensure_ray
    from fusionlog.tune import tune_small, write_best

    ensure_ray(cfg.ray, cfg.run.progress)
    result = tune_small(cfg, cfg.tune)
    path = write_best(result, Path(cfg.run.output_dir) / "tune" / "best.yaml")
    print(f"best of {result.trials} trials ({result.stopped_early} stopped early): source-val {result.metric}="
          f"{result.score:.4f} with {json.dumps(result.best)}")
    print(f"best config: {path}  (fusionlog train-small --config <config> --config {path})")
    return 0


def file_overrides(paths: list[str]) -> list[str]:
    """Later ``--config`` files (e.g. Tune's best.yaml) as ``key.sub=value`` overrides over the first file."""
    out: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out.append(f"{prefix}{key}={json.dumps(value)}")

    for path in paths:
        tree = read_yaml(path) or {}
        if not isinstance(tree, dict):
            raise ConfigError([f"{path}: top level must be a mapping, got {type(tree).__name__}"])
        walk(tree, "")
    return out


def _suite():
    """The evaluation suite lives in the source checkout's ``experiments/`` (it is not part of the library)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "experiments" / "suite.py").is_file():
        raise FusionLogError("the evaluation suite is in experiments/ of a source checkout (git clone, then "
                             "pip install -e .); this installation has none")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import experiments.suite

    return experiments.suite


COMMANDS = {"prepare": _prepare, "train-small": _train_small, "train": _train, "evaluate": _evaluate, "tune": _tune}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusionlog", description="Zero-label cross-system log anomaly detection")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", action="append", default=[],
                        help="YAML config (defaults apply where it is silent); repeat it to apply more files over "
                             "the first, e.g. Tune's <run.output_dir>/tune/best.yaml (paths resolve against the first)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--artifact", help="model artifact directory (train-small: where to write; evaluate: what "
                                           "to score; default <run.output_dir>/fused)")
    parser.add_argument("--skip-prepare", action="store_true", help="train: reuse data.output_dir as prepared")
    parser.add_argument("--suite", help="evaluate: run the evaluation suite in this YAML (e.g. configs/suite.yaml; "
                                        "overrides apply to every run) and write docs/results.md")
    parser.add_argument("--render-only", action="store_true",
                        help="evaluate --suite: write the report again from the last complete run's saved rows")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, applied after the YAML")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("drain3").setLevel(logging.WARNING)  # per-snapshot chatter
    try:
        if args.suite:  # the suite has its own YAML (configs/suite.yaml) naming the base config
            if args.command != "evaluate":
                raise ValueError("--suite goes with the evaluate command")
            return _suite().run_suite(args.suite, list(args.overrides) + (["run.progress=false"] if args.quiet else []),
                             render_only=args.render_only)
        overrides = file_overrides(args.config[1:]) + list(args.overrides) + (["run.progress=false"] if args.quiet
                                                                             else [])
        cfg = load_config(args.config[0] if args.config else None, overrides)
        return COMMANDS[args.command](cfg, args)
    except (FusionLogError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
