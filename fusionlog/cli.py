"""``fusionlog <command> --config x.yaml key.sub=value ...`` — thin over the library functions."""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import yaml

from fusionlog.config import ConfigError, FusionLogError, load_config, read_yaml, to_dict
from fusionlog.console import LOG_FILE, Terminal, session

log = logging.getLogger("fusionlog")


def _prepare(cfg, args, term: Terminal) -> int:
    from fusionlog.prepare import prepare

    manifest = prepare(cfg)
    term.show(format_manifest(manifest))
    term.show(f"outputs: {cfg.data.output_dir}")
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


def _train_small(cfg, args, term: Terminal) -> int:
    from fusionlog.dataset import load_train_data
    from fusionlog.pipeline import export_parsing_state
    from fusionlog.ray_runtime import ensure_ray
    from fusionlog.train import fit_small

    data = load_train_data(cfg.data.output_dir, cfg.data.sources, cfg.data.target, cfg.train.val_fraction, cfg.run.seed)
    ensure_ray(cfg.ray, cfg.run.progress)
    fit = fit_small(cfg, data, artifact_dir=args.artifact,
                    extras=lambda folder: export_parsing_state(cfg.data.output_dir, cfg.data.target, folder))
    if fit.resumed_after is not None:
        term.show(f"run {fit.name}: resumed after epoch {fit.resumed_after} from its last checkpoint")
    m = fit.best_metrics
    term.show(f"run {fit.name}: best epoch {fit.best_epoch} ({fit.stopped}), source-val F1 {m['val_f1']:.3f} "
              f"AUROC {m['val_auroc']:.3f} (threshold {m['threshold']:.3f})")
    term.show(f"artifact: {fit.artifact_dir}")
    return 0


def _train(cfg, args, term: Terminal) -> int:
    from fusionlog.pipeline import train
    from fusionlog.summary import format_summary

    summary = train(cfg, skip_prepare=args.skip_prepare)
    term.show(format_summary(summary, config_args(args, cfg)))
    return 0


def _evaluate(cfg, args, term: Terminal) -> int:
    from fusionlog.evaluate import baseline_rows, evaluate_artifact
    from fusionlog.summary import format_evaluation

    artifact = args.artifact or str(Path(cfg.run.output_dir) / "fused")
    row = evaluate_artifact(artifact, cfg.data.output_dir, cfg.data.target)
    rows = [row, *baseline_rows(cfg.data.output_dir, cfg.data.target, row["pair"])]
    term.show(format_evaluation(rows))
    return 0


def _report(run_dir: Path, args, term: Terminal) -> int:
    from fusionlog.report import write_report

    path = write_report(run_dir, labels=args.labels, top=args.top)
    term.show(f"report: {path}" + ("  (with the target's labels: evaluation)" if args.labels else ""))
    return 0


def _tune(cfg, args, term: Terminal) -> int:
    from fusionlog.ray_runtime import ensure_ray
    from fusionlog.tune import tune_small, write_best

    ensure_ray(cfg.ray, cfg.run.progress)
    result = tune_small(cfg, cfg.tune)
    path = write_best(result, Path(cfg.run.output_dir) / "tune" / "best.yaml")
    term.show(f"best of {result.trials} trials ({result.stopped_early} stopped early): source-val {result.metric}="
              f"{result.score:.4f} with {json.dumps(result.best)}")
    term.show(f"best config: {path}  (fusionlog train-small --config <config> --config {path})")
    return 0


def config_args(args, cfg) -> str:
    """The config for the next commands: the user's own file when they gave no overrides, else the run's
    resolved config.yaml (short, and exactly this run)."""
    if args.overrides or len(args.config) != 1:
        return f"--config {shlex.quote(str(Path(cfg.run.output_dir) / 'config.yaml'))}"
    return f"--config {shlex.quote(args.config[0])}"


def log_dir(cfg) -> Path:
    """Where a command's log file goes: the run directory (never data.output_dir, which prepare replaces whole)."""
    return Path(cfg.run.output_dir)


def _stop_ray(was_running: bool) -> None:
    """Shut down the Ray this command started, while its exit chatter still goes to the log file."""
    ray = sys.modules.get("ray")
    if not was_running and ray is not None and ray.is_initialized():
        ray.shutdown()


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


COMMANDS = {"prepare": _prepare, "train-small": _train_small, "train": _train, "evaluate": _evaluate, "tune": _tune,
            "report": _report}
WRITES_RUN = ("train-small", "train", "tune")  # their resolved config goes to the run directory (prepare's: beside
                                               # the prepared data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusionlog", description="Zero-label cross-system log anomaly detection")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", action="append", default=[],
                        help="YAML config (defaults apply where it is silent); repeat it to apply more files over "
                             "the first, e.g. Tune's <run.output_dir>/tune/best.yaml (paths resolve against the first)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines, warnings only")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray's and the libraries' own logs on the console too (by default they go to "
                             "<run.output_dir>/fusionlog.log)")
    parser.add_argument("--artifact", help="model artifact directory (train-small: where to write; evaluate: what "
                                           "to score; default <run.output_dir>/fused)")
    parser.add_argument("--skip-prepare", action="store_true", help="train: reuse data.output_dir as prepared")
    parser.add_argument("--labels", action="store_true",
                        help="report: scores by class and metrics, through the evaluator (this is evaluation)")
    parser.add_argument("--top", type=int, default=10, help="report: how many top-scored target sequences to explain")
    parser.add_argument("--suite", help="evaluate: run the evaluation suite in this YAML (e.g. configs/suite.yaml; "
                                        "overrides apply to every run) and write docs/results.md")
    parser.add_argument("--render-only", action="store_true",
                        help="evaluate --suite: write the report again from the last complete run's saved rows")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, applied after the YAML; report: RUN_DIR "
                                                     "(or --config, whose run.output_dir is the run)")
    args = parser.parse_intermixed_args(argv)
    no_ray_bars = [] if args.verbose and not args.quiet else ["run.progress=false"]  # Ray Data's and Tune's own
    try:
        if args.suite:  # the suite has its own YAML (configs/suite.yaml) naming the base config
            if args.command != "evaluate":
                raise ValueError("--suite goes with the evaluate command")
            logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                                format="%(asctime)s %(name)s %(levelname)s %(message)s")
            return _suite().run_suite(args.suite, list(args.overrides) + no_ray_bars, render_only=args.render_only)
        if args.command == "report" and not args.config:
            if len(args.overrides) != 1:
                raise ValueError("report needs one RUN_DIR (a `fusionlog train` run.output_dir) or --config")
            cfg, where = None, Path(args.overrides[0])
            if not where.is_dir():
                raise FileNotFoundError(f"run directory not found: {where}")
        else:
            cfg = load_config(args.config[0] if args.config else None,
                              file_overrides(args.config[1:]) + list(args.overrides) + no_ray_bars)
            where = log_dir(cfg)
    except (FusionLogError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    was_running = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    with session(where / LOG_FILE, verbose=args.verbose, quiet=args.quiet) as term:
        try:
            if args.command in WRITES_RUN:
                Path(cfg.run.output_dir).mkdir(parents=True, exist_ok=True)
                (Path(cfg.run.output_dir) / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            return COMMANDS[args.command](where if args.command == "report" else cfg, args, term)
        except (FusionLogError, FileNotFoundError, ValueError) as exc:
            log.error("%s", exc, extra={"shown": True})
            term.message(f"error: {exc}")
            return 2
        except Exception as exc:
            log.exception("fusionlog %s failed", args.command, extra={"shown": True})
            term.message(f"error: {type(exc).__name__}: {exc}"
                         + ("" if args.verbose else f"\n  the traceback is in {term.log_file}"))
            return 1
        finally:
            _stop_ray(was_running)


if __name__ == "__main__":
    sys.exit(main())
