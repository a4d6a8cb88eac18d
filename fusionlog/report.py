"""``fusionlog report RUN_DIR``: one self-contained HTML page about a FusionLog run, to look at rather than read.

Sections: the run (sizes, threshold), the fused model's scores on the target, the router's s_k with
tau, the distillation rounds (pool and clean samples per class), and the top flagged target
sequences with their bottleneck event and nearest labelled neighbours (``scoring.Scorer``, the
serving path). Plots are inline PNGs, so the page is one file to open or send anywhere. Target
labels are read only when asked (``labels=True``) and only through the evaluator, which hands back
metrics and per-class histograms, never the labels.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.parquet as pq

from fusionlog.artifact import ROUTING
from fusionlog.dataset import PreparedSystem, load_prepared
from fusionlog.scoring import ParsedSequence, Scorer
from fusionlog.summary import data_line, warnings

log = logging.getLogger(__name__)

REPORT = "report.html"
BINS = np.linspace(0.0, 1.0, 41)


@dataclass
class Flagged:
    seq_id: str
    probability: float
    s_k: float
    general: bool
    events: list[str]  # the sequence's distinct templates, in order of first appearance
    bottleneck: Optional[dict]
    nearest: list[dict]


@dataclass
class RunView:
    """Everything the page shows, gathered once; ``render`` turns it into HTML without reading anything."""

    run_dir: str
    summary: dict  # train_summary.json
    target: str
    sources: list[str]
    threshold: float
    threshold_chosen_on: str
    scores: np.ndarray  # the fused model's p(anomalous) per target sequence
    s_k: np.ndarray
    general: np.ndarray
    flagged: list[Flagged]
    evaluation: Optional[dict] = None  # with labels: {"rows": [...], "histograms": {"normal": counts, ...}}


# ----------------------------------------------------------------------------- gathering


def prepared_dir(run_dir: Path, config: dict) -> Path:
    """The run's prepared data (``data.output_dir``, relative to where training ran, or inside the run)."""
    given = Path(config["data"]["output_dir"])
    for candidate in (given, run_dir / given.name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"prepared data of the run not found at {given} (data.output_dir; run the report from "
                            "the directory training ran in)")


def top_flagged(scorer: Scorer, target: PreparedSystem, scores: np.ndarray, routing: dict, top: int) -> list[Flagged]:
    """The ``top`` highest-scored target sequences, explained as serving explains a flagged sequence."""
    rows, _ = scorer.artifact.reindex(target)
    position = {sid: k for k, sid in enumerate(routing["seq_id"])}
    out = []
    for i in np.argsort(-scores, kind="stable")[:top]:
        parsed = ParsedSequence(rows[i], list(range(len(rows[i]))))
        k = position.get(target.seq_ids[i])
        out.append(Flagged(target.seq_ids[i], float(scores[i]),
                           float(routing["score"][k]) if k is not None else float("nan"),
                           bool(routing["general"][k]) if k is not None else False,
                           list(dict.fromkeys(target.templates[e] for e in target.sequences[i])),
                           scorer.bottleneck(parsed), scorer.nearest(parsed) or []))
    return out


def gather(run_dir: str | Path, labels: bool = False, top: int = 10) -> RunView:
    """Read the run directory (train_summary.json, fused/) and the prepared target; score the target."""
    run_dir = Path(run_dir)
    summary_file = run_dir / "train_summary.json"
    if not summary_file.is_file():
        raise FileNotFoundError(f"{summary_file} not found: RUN_DIR is a `fusionlog train` run.output_dir")
    summary = json.loads(summary_file.read_text())
    scorer = Scorer.load(run_dir / "fused")
    art = scorer.artifact
    target_name = art.summary.get("target") or art.config["data"]["target"]
    data_dir = prepared_dir(run_dir, art.config)
    target = load_prepared(data_dir, target_name, read_labels=False)
    scores, _ = scorer.score_system(target)
    routing = pq.read_table(run_dir / "fused" / ROUTING).to_pydict()
    by_id = dict(zip(routing["seq_id"], range(len(routing["seq_id"]))))
    order = [by_id[s] for s in target.seq_ids if s in by_id]
    view = RunView(str(run_dir), summary, target_name, list(art.summary.get("sources", [])), scorer.threshold,
                   art.summary.get("threshold_chosen_on", "source-val"), scores,
                   np.asarray(routing["score"], dtype=np.float64)[order], np.asarray(routing["general"], bool)[order],
                   top_flagged(scorer, target, scores, routing, top))
    if labels:
        view.evaluation = evaluation(data_dir, view)
    return view


def evaluation(data_dir: Path, view: RunView) -> dict:
    """Metrics beside the label-free baselines, and score histograms by class: the evaluator's, not ours."""
    from fusionlog.evaluate import Evaluator, baseline_rows

    evaluator = Evaluator(data_dir, view.target)
    pair = f"{'+'.join(view.sources)}->{view.target}"
    model = evaluator.row(view.scores, view.threshold, pair, "fusionlog",
                          {"threshold_chosen_on": view.threshold_chosen_on})
    return {"rows": [model, *baseline_rows(data_dir, view.target, pair)],
            "histograms": evaluator.histograms(view.scores, BINS)}


# ----------------------------------------------------------------------------- plots


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _axes(title: str, xlabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sequences")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _legend(ax) -> None:
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars stay visible


def scores_plot(scores: np.ndarray, threshold: float, by_class: Optional[dict] = None) -> str:
    fig, ax = _axes("fused model on the target", "p(anomalous)")
    if by_class is None:
        ax.hist(scores, BINS, color="#4c72b0")
    else:
        centers, width = (BINS[:-1] + BINS[1:]) / 2, BINS[1] - BINS[0]
        ax.bar(centers, by_class["normal"], width, color="#4c72b0", label="normal")
        ax.bar(centers, by_class["anomalous"], width, bottom=by_class["normal"], color="#dd8452", label="anomalous")
        _legend(ax)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.annotate(f"threshold {threshold:.3f}", (threshold, ax.get_ylim()[1] * 0.92), xytext=(4, 0),
                textcoords="offset points", fontsize=8)
    return _png(fig)


def routing_plot(s_k: np.ndarray, tau: float) -> str:
    fig, ax = _axes("router: s_k of each target sequence", "s_k (min over events of max cosine to a source event)")
    lo, hi = min(float(s_k.min(initial=tau)), tau), max(float(s_k.max(initial=tau)), tau)
    bins = np.linspace(lo, max(hi, lo + 1e-6), 31)
    ax.hist(s_k[s_k < tau], bins, color="#c44e52", label="proprietary")
    ax.hist(s_k[s_k >= tau], bins, color="#55a868", label="general")
    ax.axvline(tau, color="black", linestyle="--", linewidth=1)
    ax.annotate(f"tau {tau:.3f}", (tau, ax.get_ylim()[1] * 0.92), xytext=(4, 0), textcoords="offset points",
                fontsize=8)
    _legend(ax)
    return _png(fig)


def rounds_plot(rounds: list[dict]) -> str:
    fig, ax = _axes("distillation: pool and clean samples per round", "round")
    x = np.arange(1, len(rounds) + 1)
    normal = np.array([r["clean"] - r["clean_anomalous"] for r in rounds])
    anomalous = np.array([r["clean_anomalous"] for r in rounds])
    ax.bar(x - 0.2, [r["pool"] for r in rounds], 0.4, color="#bbbbbb", label="pool")
    ax.bar(x + 0.2, normal, 0.4, color="#4c72b0", label="clean normal")
    ax.bar(x + 0.2, anomalous, 0.4, bottom=normal, color="#dd8452", label="clean anomalous")
    ax.set_xticks(x)
    _legend(ax)
    return _png(fig)


# ----------------------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .6em;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}th{background:#f6f6f6}.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;background:#f4f4f4;padding:0 .2em}.muted{color:#777}.warn{color:#a33}img{max-width:100%}
ul.events{margin:0;padding-left:1.1em;font-size:12px}.row{display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
.row>img{flex:0 0 auto}.row>div{flex:1 1 300px}
"""

# Fails loudly (a console error) if an inline image does not decode: the browser test checks for it.
CHECK_IMAGES = """
window.addEventListener('load', () => {
  const bad = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
  bad.forEach(i => console.error('image did not render: ' + i.alt));
  document.body.dataset.imagesOk = bad.length === 0 ? 'true' : 'false';
});
"""


def _e(value) -> str:
    return html.escape(str(value))


def _clip(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _table(head: Optional[list[str]], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """Cells are HTML already (escape text with ``_e``); ``head`` None: no header row."""
    ths = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td class=num>{c}</td>" if k in numeric else f"<td>{c}</td>"
                                    for k, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{ths}{body}</table>"


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>'


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{_e(alt)}">'


def run_section(view: RunView) -> str:
    s = view.summary
    rows = [["data", _e(data_line(s["data"])) if s.get("data") else "n/a"],
            ["threshold", f"{view.threshold:.4f}, chosen on {_e(view.threshold_chosen_on)}"],
            ["flagged", f"{int((view.scores >= view.threshold).sum())} of {len(view.scores)} target sequences"],
            ["artifact", f"<code>{_e(s.get('artifact', ''))}</code>"]]
    if s.get("teacher"):
        rows.insert(2, ["teacher", _e(s["teacher"]["kind"] + (f" ({s['teacher']['backend']})"
                                                              if s["teacher"].get("backend") else ""))])
    warn = "".join(f"<li class=warn>{_e(w)}</li>" for w in warnings(s)) if s.get("data") else ""
    return _section("run", "The run", _table(None, rows) + (f"<ul>{warn}</ul>" if warn else ""))


def scores_section(view: RunView) -> str:
    ev = view.evaluation
    plot = _img(scores_plot(view.scores, view.threshold, ev["histograms"] if ev else None), "target scores")
    n = int((view.scores >= view.threshold).sum())
    body = (f"<p>{n} of {len(view.scores)} target sequences at or above the threshold {view.threshold:.3f} "
            f"(chosen on {_e(view.threshold_chosen_on)}).</p>")
    if ev is None:
        body += ("<p class=muted>Scores without classes: the target's labels are read only by the evaluator "
                 "(<code>fusionlog report RUN_DIR --labels</code>).</p>")
    else:
        rows = [[_e("fused model" if k == 0 else r["method"]),
                 *(f"{r[m]:.3f}" for m in ("precision", "recall", "f1", "auroc")), f"{r['threshold']:.3f}"]
                for k, r in enumerate(ev["rows"])]
        body += (f"<p>Against the target's labels ({ev['rows'][0]['evaluated']} sequences, "
                 f"{ev['rows'][0]['anomalous']} anomalous), beside the label-free baselines:</p>"
                 + _table(["method", "P", "R", "F1", "AUROC", "threshold"], rows, {1, 2, 3, 4, 5}))
    return _section("scores", "Scores on the target", f"<div class=row>{plot}<div>{body}</div></div>")


def routing_section(view: RunView) -> str:
    r = view.summary["routing"]
    body = (f"<p>tau = {r['tau']:.4f}: <b>{r['general']}</b> general sequences (meta-learning's target side and "
            f"the first knowledge base), <b>{r['proprietary']}</b> proprietary ones (the teacher's pool).</p>")
    plot = _img(routing_plot(view.s_k, float(r["tau"])), "router s_k")
    return _section("routing", "Router", f"<div class=row>{plot}<div>{body}</div></div>")


def distill_section(view: RunView) -> str:
    d = view.summary.get("distill")
    if not d or not d["rounds"]:
        why = view.summary.get("distill_skipped", "no rounds ran")
        return _section("distill", "Distillation", f"<p class=warn>No distillation: {_e(why)}.</p>")
    rows = [[r["round"] + 1, f"{r['epsilon']:.2f}", r["pool"], r["clean"] - r["clean_anomalous"], r["clean_anomalous"],
             r["llm_anomalous"], r["llm_unparsed"], r.get("finetuned_on", 0),
             "-" if r["finetune_loss"] is None or np.isnan(r["finetune_loss"]) else f"{r['finetune_loss']:.4f}",
             r["kb_size"]] for r in d["rounds"]]
    table = _table(["round", "epsilon", "pool", "clean normal", "clean anomalous", "teacher: anomalous",
                    "teacher: no answer", "fine-tuned on", "loss", "knowledge base"], rows, set(range(10)))
    after = (f"<p>Knowledge base {d['kb_initial']} → {d['kb_final']} sequences; {d['leftovers']} leftovers took "
             f"the teacher's label (fine-tuned on {d.get('leftover_finetuned_on', 0)}).</p>")
    plot = _img(rounds_plot(d["rounds"]), "distillation rounds")
    return _section("distill", "Distillation", f"<div class=row>{plot}<div>{after}</div></div>{table}")


def flagged_section(view: RunView) -> str:
    rows = []
    for k, f in enumerate(view.flagged, 1):
        events = "".join(f"<li>{_e(_clip(t))}</li>" for t in f.events[:4]) + (
            f"<li class=muted>… {len(f.events) - 4} more</li>" if len(f.events) > 4 else "")
        b = f.bottleneck
        bottleneck = f"{_e(b['template'])}<br><span class=muted>similarity {b['similarity']:.3f}</span>" if b else "-"
        near = "".join(f"<li>{'anomalous' if n['label'] else 'normal'} ({n['similarity']:.3f}): "
                       f"{_e(_clip(n['content'].splitlines()[0] if n['content'] else ''))}</li>" for n in f.nearest)
        rows.append([k, f"<code>{_e(f.seq_id)}</code>", f"{f.probability:.3f}"
                     + ("" if f.probability >= view.threshold else " <span class=muted>(below)</span>"),
                     f"{f.s_k:.3f} {'general' if f.general else 'proprietary'}", f"<ul class=events>{events}</ul>",
                     bottleneck, f"<ul class=events>{near}</ul>" if near else "<span class=muted>none</span>"])
    n = int((view.scores >= view.threshold).sum())
    intro = (f"<p>The {len(view.flagged)} highest-scored of the {len(view.scores)} target sequences ({n} flagged at "
             f"threshold {view.threshold:.3f}); the bottleneck is the event least like any source event, the "
             "neighbours are the knowledge base's nearest labelled sequences.</p>")
    return _section("flagged", "Top flagged target sequences", intro + _table(
        ["#", "sequence", "p", "s_k", "events", "bottleneck event", "nearest labelled"], rows, {0}))


def render(view: RunView) -> str:
    """The whole page, from a gathered ``RunView``."""
    title = f"FusionLog {'+'.join(view.sources)} → {view.target}"
    body = "".join([run_section(view), scores_section(view), routing_section(view), distill_section(view),
                    flagged_section(view)])
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
            f"<p class=muted>run directory <code>{_e(view.run_dir)}</code></p>{body}"
            f"<script>{CHECK_IMAGES}</script></body></html>")


def write_report(run_dir: str | Path, labels: bool = False, top: int = 10) -> Path:
    """``RUN_DIR/report.html``; ``labels``: classes and metrics through the evaluator (evaluation only)."""
    path = Path(run_dir) / REPORT
    path.write_text(render(gather(run_dir, labels, top)), encoding="utf-8")
    log.info("report written to %s", path)
    return path
