"""What a person reads at the end of a command: the closing summary of ``train``, the table of ``evaluate``.

Pure text from the dicts the library returns (``pipeline.train``'s summary, ``evaluate``'s rows), so
a run's ``train_summary.json`` reads the same way later. The training summary shows the target's
size only: its anomaly count would be one of its labels.
"""
from __future__ import annotations

import math
import textwrap
from typing import Optional

from fusionlog.progress import duration

INDENT = " " * 12


def _num(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _line(label: str, text: str) -> str:
    return f"  {label:<10}{text}"


def data_line(data: dict) -> str:
    sources = "; ".join(f"{name} {d['sequences']:,} sequences ({d['anomalous']:,} anomalous)"
                        for name, d in data["sources"].items())
    target = data["target"]
    return f"{sources}; {target['name']} {target['sequences']:,} sequences (target, labels not read)"


def teacher_line(teacher: dict) -> str:
    kind = teacher["kind"] + (f" ({teacher['backend']})" if teacher.get("backend") else "")
    if teacher.get("source_members"):  # a committee vote: member reliabilities learnt on source-val
        rate = (teacher.get("report") or {}).get("anomaly_rate")
        return (f"{kind}, member reliabilities from {teacher['samples']} source-val sequences; estimated target "
                f"anomaly rate {_num(rate)}")
    if teacher.get("calibrated"):
        return f"{kind}, threshold {_num(teacher['threshold'])} calibrated on {teacher['samples']} source-val sequences"
    return f"{kind}, its own rule (threshold {_num(teacher.get('threshold'))})"


def distill_lines(d: dict) -> list[str]:
    """Two lines: the pool and clean samples per class per round; fine-tuning and leftovers."""
    rounds = d["rounds"]
    per_round = " ".join(f"{r['clean'] - r['clean_anomalous']}/{r['clean_anomalous']}" for r in rounds)
    pool = (f"pool {d['pool_initial']}" + (f" ({d['pool_capped']} capped out)" if d.get("pool_capped") else "")
            + (f", {d['held_out']} held out" if d.get("held_out") else ""))
    first = f"{len(rounds)} rounds, {pool}; clean normal/anomalous per round: {per_round or 'none'}"
    tuned = [str(r["round"] + 1) for r in rounds if r.get("finetuned_on")]
    second = (f"fine-tuned in round {', '.join(tuned)}" if tuned
              else "no round fine-tuned (no clean set held both classes)")
    if d.get("leftovers"):
        second += (f"; {d['leftovers']} leftovers took the teacher's label"
                   + (f", fine-tuned on {d['leftover_finetuned_on']}"
                      if d.get("leftover_finetuned_on") else " (not fine-tuned on)"))
    return [first, second]


def warnings(summary: dict) -> list[str]:
    """What a person should know before trusting the fused model, in plain words."""
    out = []
    small = summary.get("small") or {}
    if small.get("val_f1") is not None and small["val_f1"] < 0.5:
        out.append(f"the small model is weak even on the source (source-val F1 {_num(small['val_f1'])})")
    d = summary.get("distill")
    if d is None:
        out.append(f"no distillation ({summary.get('distill_skipped', 'skipped')}): the fused model is the small model")
        return out
    rounds = d["rounds"]
    if not any(r.get("finetuned_on") for r in rounds) and not d.get("leftover_finetuned_on"):
        why = "no clean sample in any round" if not sum(r["clean"] for r in rounds) else "pseudo-labels of one class"
        out.append(f"no fine-tuning happened ({why}): the fused weights are the small model's")
    labels = summary.get("pseudo_labels") or {}
    if sum(labels.values()) and min(labels.values()) == 0:
        only = "normal" if labels.get("normal") else "anomalous"
        out.append(f"pseudo-labels of one class only (all {sum(labels.values())} {only}): nothing was learnt "
                   "from them")
    stats = (summary.get("teacher") or {}).get("stats") or {}
    if stats.get("requests") and not stats.get("labelled"):
        out.append(f"the teacher answered none of its {stats['requests']} requests: is it available?")
    elif stats.get("unanswered"):
        out.append(f"the teacher left {stats['unanswered']} of its {stats['requests']} requests unanswered "
                   "(see fusionlog.log)")
    answered = sum(r["pool"] - r["llm_unparsed"] for r in rounds)
    anomalous = sum(r["llm_anomalous"] for r in rounds)
    if answered and anomalous in (0, answered):
        out.append(f"the teacher called every sequence it answered {'anomalous' if anomalous else 'normal'}")
    if d.get("pool_capped"):
        out.append(f"distill.max_pool: {d['pool_capped']} proprietary sequences never reached the teacher")
    return out


def format_summary(summary: dict, config_args: str = "") -> str:
    """About a dozen lines closing ``fusionlog train``; ``config_args`` is how the user named the config
    (``--config configs/demo.yaml ...``), for the next commands (default: the run's own config.yaml)."""
    data, routing = summary["data"], summary["routing"]
    run_dir = summary["run_dir"]
    sources = "+".join(data["sources"])
    took = f" in {duration(summary['seconds'])}" if summary.get("seconds") is not None else ""
    lines = [f"FusionLog {sources} -> {data['target']['name']} finished{took}",
             _line("data", data_line(data)),
             _line("router", f"tau {_num(routing['tau'])}: {routing['general']} general, "
                             f"{routing['proprietary']} proprietary target sequences")]
    small = summary.get("small") or {}
    lines.append(_line("small", f"best epoch {small.get('best_epoch')}: source-val F1 {_num(small.get('val_f1'))}, "
                                f"AUROC {_num(small.get('val_auroc'))}"))
    if summary.get("teacher"):
        lines.append(_line("teacher", teacher_line(summary["teacher"])))
    if summary.get("distill"):
        first, second = distill_lines(summary["distill"])
        lines += [_line("distill", first), INDENT + second]
    threshold = summary.get("threshold") or {}
    lines.append(_line("threshold", f"{_num(threshold.get('value'))}, chosen on {threshold.get('chosen_on')}"))
    lines.append(_line("artifact", summary["artifact"]))
    for k, text in enumerate(warnings(summary)):
        lines.append((_line("warnings", "") if k == 0 else INDENT) + f"! {text}")
    args = config_args or f"--config {run_dir}/config.yaml"
    lines += [_line("next", f"fusionlog evaluate {args}   # scores against the target's labels"),
              INDENT + f"fusionlog report {run_dir}   # writes {run_dir}/report.html",
              INDENT + f"serve run serve_config.yaml   # with args.artifact_dir: {summary['artifact']}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- evaluate


def verdict(model: dict, baselines: list[dict]) -> str:
    """One sentence on what the model's numbers mean beside the label-free baselines."""
    best = max(baselines, key=lambda r: r["f1"])
    if model["f1"] > best["f1"]:
        text = f"F1 above every label-free baseline (best: {best['method']}, {_num(best['f1'])})."
    else:
        text = (f"F1 not above the {best['method']} ({_num(best['f1'])}): on this target the model does not "
                "beat a rule that needs no training.")
    if not math.isnan(model["auroc"]) and model["auroc"] <= 0.5:
        text += f" AUROC {_num(model['auroc'])}: its scores rank anomalies no better than chance."
    return text


def format_evaluation(rows: list[dict]) -> str:
    """The model's row (first) and the label-free baselines on the same target, as a small table."""
    model, baselines = rows[0], rows[1:]
    head = (f"{model['pair']}: {model['evaluated']} target sequences, {model['anomalous']} anomalous "
            "(labels read by the evaluator only)")
    table = [f"  {'method':<20} {'P':>6} {'R':>6} {'F1':>6} {'AUROC':>6}  threshold"]
    for k, r in enumerate(rows):
        if k == 0:
            name = "fused model" if r["method"] == "fusionlog" else f"small model ({r['method']})"
            threshold = f"{_num(r['threshold'])}, chosen on {r.get('threshold_chosen_on', 'source-val')}"
        else:
            name = r["method"]
            threshold = "-" if name == "flag everything" else f"{_num(r['threshold'])}, its own rule (no training)"
        table.append(f"  {name:<20} {_num(r['precision']):>6} {_num(r['recall']):>6} {_num(r['f1']):>6} "
                     f"{_num(r['auroc']):>6}  {threshold}")
    return "\n".join([head, *table, *textwrap.wrap(verdict(model, baselines) if baselines else "", 100)])
