"""``fusionlog <command> --config x.yaml key.sub=value ...`` — thin over the library functions."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from fusionlog.config import FusionLogError, load_config

log = logging.getLogger("fusionlog")


def _prepare(cfg) -> int:
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
    e = manifest["embedding"]
    rows.append(f"embedding: {e['encoder']} d={e['dim']} events={e['events']} oov tokens={e['oov_tokens']}/"
                f"{e['tokens']} ({e['oov_rate']:.1%})")
    return "\n".join(rows)


COMMANDS = {"prepare": _prepare}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusionlog", description="Zero-label cross-system log anomaly detection")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", help="YAML config (defaults apply where it is silent)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, applied after the YAML")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("drain3").setLevel(logging.WARNING)  # per-snapshot chatter
    try:
        overrides = list(args.overrides) + (["run.progress=false"] if args.quiet else [])
        cfg = load_config(args.config, overrides)
        return COMMANDS[args.command](cfg)
    except (FusionLogError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
