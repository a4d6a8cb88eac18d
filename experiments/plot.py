"""The suite's figure: F1 (mean ± sd) per pair and method, from the saved record."""
from __future__ import annotations

from pathlib import Path

from experiments.aggregate import METHOD_LABELS, METHOD_ORDER, aggregate
from experiments.record import Record


def write_plot(rec: Record, path: str | Path) -> Path:
    """Grouped bars per pair; the in-domain reference (not zero-label) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aggs = aggregate(rec.rows)
    zero = [a for a in aggs if a["method"] != "in_domain"]
    pairs = list(dict.fromkeys(a["pair"] for a in zero))
    methods = [m for m in METHOD_ORDER if any(a["method"] == m for a in zero)]
    ind = {a["pair"].split(" ")[0]: a for a in aggs if a["method"] == "in_domain"}
    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(pairs)), 4.5))
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        xs, ys, es = [], [], []
        for i, p in enumerate(pairs):
            a = next((a for a in zero if a["pair"] == p and a["method"] == m), None)
            if a and a["f1"][2]:
                xs.append(i + (k - (len(methods) - 1) / 2) * width)
                ys.append(a["f1"][0])
                es.append(a["f1"][1])
        label = METHOD_LABELS[m] + (" [LLM teacher]" if m == "fusionlog_llm" else "")
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=label)
    for i, p in enumerate(pairs):
        a = ind.get(p.split("->")[-1])
        if a and a["f1"][2]:
            ax.hlines(a["f1"][0], i - 0.45, i + 0.45, colors="k", linestyles="dashed",
                      label="in-domain supervised (NOT zero-label)" if i == 0 else None)
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([p.replace("->", "\n->") for p in pairs], fontsize=8)
    ax.set_ylabel("F1 on the target (anomaly = positive)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Zero-label transfer: F1 per pair and method (mean ± sd over seeds)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
