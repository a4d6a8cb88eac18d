"""Pure summaries of result rows over seeds: mean ± sample sd, grouped by (pair, method, teacher)."""
from __future__ import annotations

import math

import numpy as np

METRICS = ("precision", "recall", "f1", "auroc")
METHOD_LABELS = {
    "keyword": "keyword rule (label-free)",
    "source_only": "source-only small model",
    "meta": "ZeroLog meta small model (routing off)",
    "fusionlog": "FusionLog (fused small model)",
    "fusionlog_all": "FusionLog, teacher on every target sequence (ours: distill.scope=all)",
    "fusionlog_llm": "FusionLog (fused small model)",
    "in_domain": "in-domain supervised (NOT zero-label)",
}
METHOD_ORDER = list(METHOD_LABELS)
FUSION_METHODS = ("fusionlog", "fusionlog_all")  # the zero-label rows the bar applies to


def mean_sd(values: list) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value), NaNs dropped; n kept."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan"), 0
    arr = np.asarray(vals, dtype=np.float64)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), sd, len(arr)


def fmt_ms(mean: float, sd: float, n: int, digits: int = 3) -> str:
    """``0.612 ± 0.034`` (sd only with 2+ values); ``n/a`` when nothing was measured."""
    if n == 0 or math.isnan(mean):
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def aggregate(rows: list[dict]) -> list[dict]:
    """Group result rows by (pair, method, teacher) and summarise P/R/F1/AUROC over seeds.

    Rows with an ``error`` count as failed seeds and are listed, never averaged in.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["pair"], r["method"], r.get("teacher", "")), []).append(r)
    out = []
    for (pair, method, teacher), items in groups.items():
        ok = [r for r in items if not r.get("error")]
        agg = {"pair": pair, "method": method, "teacher": teacher, "seeds": sorted(r.get("seed", 0) for r in ok),
               "failed": [f"seed {r.get('seed')}: {r['error']}" for r in items if r.get("error")],
               "zero_label": all(r.get("zero_label", True) for r in items)}
        for m in METRICS:
            agg[m] = mean_sd([r[m] for r in ok if m in r])
        agg["sizes"] = ok[0].get("sizes", {}) if ok else {}
        agg["seconds"] = mean_sd([r.get("seconds") for r in ok if r.get("seconds") is not None])
        out.append(agg)
    pair_order = {p: i for i, p in enumerate(dict.fromkeys(r["pair"] for r in rows))}
    out.sort(key=lambda a: (pair_order[a["pair"]], METHOD_ORDER.index(a["method"]) if a["method"] in METHOD_ORDER
                            else 99, a["teacher"]))
    return out


def scope(method: str | None) -> str:
    return "all" if method == "fusionlog_all" else "proprietary"


def aggregate_subsets(subsets: list[dict]) -> list[dict]:
    """Per (pair, variant, teacher, subset): small-model vs fused-model F1 over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for s in subsets:
        groups.setdefault((s["pair"], s.get("method"), s["teacher"], s["subset"]), []).append(s)
    return [{"pair": pair, "scope": scope(method), "teacher": teacher, "subset": subset,
             "sequences": items[0]["sequences"], "anomalous": mean_sd([i["anomalous"] for i in items]),
             "small_f1": mean_sd([i["small_f1"] for i in items]), "fused_f1": mean_sd([i["fused_f1"] for i in items]),
             "seeds": len(items)} for (pair, method, teacher, subset), items in groups.items()]
