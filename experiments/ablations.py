"""FusionLog ablations and the routing-threshold sweep (§IV-C/D) -> docs/ablations.md + PNG.

    python -m experiments.ablations --config configs/demo.yaml teacher.kind=keyword
    ray job submit --working-dir . -- python ray_jobs/ablations.py --config configs/demo.yaml teacher.kind=keyword

Each variant is ``fusionlog train`` with one switch changed (``dataclasses.replace`` on the typed
config; the prepared data is reused), then the evaluator scores the fused model on the target.
Also plots the per-round pool sizes of the full method and F1 against a fixed routing threshold tau.
Trailing key=value arguments apply to every run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from fusionlog.config import FusionLogConfig, checked, load_config
from fusionlog.evaluate import evaluate_artifact
from fusionlog.pipeline import train
from fusionlog.prepare import prepare

Variant = Callable[[FusionLogConfig], FusionLogConfig]
VARIANTS: dict[str, tuple[str, Variant]] = {
    "FusionLog (full)": ("-", lambda c: c),
    "no routing (tau 0)": ("routing.enabled=false", lambda c: replace(c, routing=replace(c.routing, enabled=False))),
    "no RAG": ("distill.use_rag=false", lambda c: replace(c, distill=replace(c.distill, use_rag=False))),
    "no dual verification": ("distill.dual_verification=false",
                             lambda c: replace(c, distill=replace(c.distill, dual_verification=False))),
    "single round": ("distill.rounds=1", lambda c: replace(c, distill=replace(c.distill, rounds=1))),
    "static threshold": ("distill.static_threshold=true",
                         lambda c: replace(c, distill=replace(c.distill, static_threshold=True))),
    "no replay (each round tunes on its own clean set)": ("distill.replay=false",
                                                          lambda c: replace(c, distill=replace(c.distill, replay=False))),
    "teacher on every target sequence (ours)": ("distill.scope=all",
                                                lambda c: replace(c, distill=replace(c.distill, scope="all"))),
    "no distillation (small model)": ("distill.enabled=false",
                                      lambda c: replace(c, distill=replace(c.distill, enabled=False))),
}
TAUS = [0.3, 0.4, 0.5, 0.6, 0.7]


def run(cfg: FusionLogConfig, out: Path, name: str) -> tuple[dict, dict]:
    """Train one variant into ``out/name`` and score its fused model."""
    cfg = checked(replace(cfg, run=replace(cfg.run, output_dir=str(out / name))))
    summary = train(cfg, skip_prepare=True)
    return summary, evaluate_artifact(summary["artifact"], cfg.data.output_dir, cfg.data.target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="outputs/ablations")
    parser.add_argument("--md", default="docs/ablations.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    out = Path(args.out)
    base = load_config(args.config, [*args.overrides, f"data.output_dir={out / 'prepared'}", "run.progress=false"])
    start = time.time()
    prepare(base)
    rows, rounds = [], []
    for k, (name, (switch, variant)) in enumerate(VARIANTS.items()):
        summary, row = run(variant(base), out, f"v{k}")
        rows.append({"variant": name, "overrides": switch, **row, "routing": summary["routing"]})
        if switch == "-":
            rounds = (summary["distill"] or {}).get("rounds", [])
        print(f"{name}: F1={row['f1']:.3f} AUROC={row['auroc']:.3f}", flush=True)
    sweep = []
    for tau in TAUS:
        summary, row = run(replace(base, routing=replace(base.routing, tau=tau)), out, f"tau{tau}")
        sweep.append({"tau": tau, "f1": row["f1"], "auroc": row["auroc"], **summary["routing"]})
        print(f"tau={tau}: F1={row['f1']:.3f} general={summary['routing']['general']}", flush=True)
    write(Path(args.md), args, rows, rounds, sweep, time.time() - start)
    return 0


def write(md: Path, args, rows: list[dict], rounds: list[dict], sweep: list[dict], seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pair, sizes = rows[0]["pair"], {k: rows[0][k] for k in ("target_sequences", "anomalous")}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    if rounds:
        r = [x["round"] for x in rounds]
        a.plot(r, [x["pool"] for x in rounds], "o-", label="pool (noisy in)")
        a.plot(r, [x["clean"] for x in rounds], "s-", label="clean")
        a.plot(r, [x["kb_size"] for x in rounds], "^-", label="knowledge base")
    a.set(title=f"{pair}: distillation rounds", xlabel="round", ylabel="sequences")
    a.legend()
    b.plot([s["tau"] for s in sweep], [s["f1"] for s in sweep], "o-", label="F1")
    b.plot([s["tau"] for s in sweep], [s["auroc"] for s in sweep], "s--", label="AUROC")
    b.set(title=f"{pair}: fixed routing threshold", xlabel="tau", ylim=(0, 1))
    b.legend()
    fig.tight_layout()
    png = md.with_suffix(".png")
    fig.savefig(png, dpi=110)
    lines = [
        "# Ablations and routing-threshold sweep", "",
        "Written by `experiments/ablations.py`; rerun, don't edit:", "",
        f"```bash\npython -m experiments.ablations --config {args.config} {' '.join(args.overrides)}\n```", "",
        f"Pair {pair}, target {sizes['target_sequences']} sequences ({sizes['anomalous']} anomalous); "
        f"one seed; {seconds / 60:.1f} min. Teacher and caps: the overrides above. Target labels are read "
        "by the evaluator only.", "",
        "| variant | switch | P | R | F1 | AUROC | general / proprietary |", "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | `{r['overrides']}` | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['f1']:.3f} | {r['auroc']:.3f} | {r['routing']['general']} / {r['routing']['proprietary']} |")
    lines += ["", "| tau | general | proprietary | F1 | AUROC |", "|---|---|---|---|---|"]
    lines += [f"| {s['tau']} | {s['general']} | {s['proprietary']} | {s['f1']:.3f} | {s['auroc']:.3f} |" for s in sweep]
    lines += ["", "Per-round log of the full method:", "", "```json", json.dumps(rounds, indent=1, default=float),
              "```", "", f"![rounds and tau sweep]({png.name})", ""]
    md.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
