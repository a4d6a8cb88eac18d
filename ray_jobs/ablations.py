"""FusionLog ablations and the routing-threshold sweep (issue 7, §IV-C/D) -> docs/ablations.md + PNG.

    python ray_jobs/ablations.py --config configs/demo.yaml llm.backend=keyword
    ray job submit --working-dir . -- python ray_jobs/ablations.py --config configs/demo.yaml llm.backend=keyword

Each variant is `fusionlog train` with one switch changed (the prepared data is reused), then the
evaluator scores the fused model on the target. Also plots the per-round pool sizes of the full
method and F1 against a fixed routing threshold tau. Trailing key=value arguments apply to every run.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from fusionlog.artifact import evaluate_artifact
from fusionlog.config import load_config
from fusionlog.pipeline import train
from fusionlog.prepare import prepare

VARIANTS = {
    "FusionLog (full)": [],
    "no routing (tau 0)": ["routing.enabled=false"],
    "no RAG": ["distill.use_rag=false"],
    "no dual verification": ["distill.dual_verification=false"],
    "single round": ["distill.rounds=1"],
    "static threshold": ["distill.static_threshold=true"],
    "no replay (each round tunes on its own clean set)": ["distill.replay=false"],
    "teacher on every target sequence (ours)": ["distill.scope=all"],
    "no distillation (small model)": ["distill.enabled=false"],
}
TAUS = [0.3, 0.4, 0.5, 0.6, 0.7]


def run(config: str, overrides: list[str], out: Path, name: str) -> tuple[dict, dict]:
    cfg = load_config(config, [*overrides, f"run.output_dir={out / name}"])
    summary = train(cfg, skip_prepare=True)
    return summary, evaluate_artifact(summary["artifact"], cfg.data.output_dir, cfg.data.target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="outputs/ablations")
    parser.add_argument("--md", default="docs/ablations.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = Path(args.out)
    base = [*args.overrides, f"data.output_dir={out / 'prepared'}", "run.progress=false"]
    start = time.time()
    prepare(load_config(args.config, base))
    rows, rounds = [], []
    for name, extra in VARIANTS.items():
        summary, row = run(args.config, [*base, *extra], out, f"v{len(rows)}")
        rows.append({"variant": name, "overrides": " ".join(extra) or "-", **row, "routing": summary["routing"]})
        if not extra:
            rounds = (summary["distill"] or {}).get("rounds", [])
        print(f"{name}: F1={row['f1']:.3f} AUROC={row['auroc']:.3f}", flush=True)
    sweep = []
    for tau in TAUS:
        summary, row = run(args.config, [*base, f"routing.tau={tau}"], out, f"tau{tau}")
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
        "Written by `ray_jobs/ablations.py`; rerun, don't edit:", "",
        f"```bash\npython ray_jobs/ablations.py --config {args.config} {' '.join(args.overrides)}\n```", "",
        f"Pair {pair}, target {sizes['target_sequences']} sequences ({sizes['anomalous']} anomalous); "
        f"one seed; {seconds / 60:.1f} min. Teacher and caps: the overrides above. Target labels are read "
        "by the evaluator only.", "",
        "| variant | overrides | P | R | F1 | AUROC | general / proprietary |", "|---|---|---|---|---|---|---|",
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
