"""The closing summary of `fusionlog train` and the table of `fusionlog evaluate`, on hand-made dicts."""
import math

from fusionlog.summary import format_evaluation, format_summary, warnings


def _round(r, pool, clean, clean_anomalous=0, llm_anomalous=0, finetuned_on=0):
    return {"round": r, "epsilon": 0.9 - 0.05 * r, "pool": pool, "clean": clean, "noisy": pool - clean,
            "llm_unparsed": 0, "llm_anomalous": llm_anomalous, "kb_size": 78 + clean, "finetune_loss": float("nan"),
            "clean_anomalous": clean_anomalous, "finetuned_on": finetuned_on}


def _summary(**changes) -> dict:
    s = {
        "run_dir": "outputs/demo",
        "data": {"sources": {"HDFS": {"sequences": 2200, "anomalous": 69}},
                 "target": {"name": "BGL", "sequences": 100}},
        "small": {"best_epoch": 4, "val_f1": 0.912, "val_auroc": 0.97, "threshold": 0.52},
        "routing": {"tau": 0.5434, "general": 78, "proprietary": 22},
        "teacher": {"kind": "llm", "backend": "llama_cpp", "calibrated": True, "samples": 32, "threshold": 0.431,
                    "stats": {"requests": 142, "labelled": 142, "unanswered": 0}},
        "distill": {"rounds": [_round(0, 22, 5, 1, 6, 5), _round(1, 17, 3, 0, 4, 8), _round(2, 14, 0, 0, 4)],
                    "kb_initial": 78, "kb_final": 86, "pool_initial": 22, "pool_capped": 0, "leftovers": 14,
                    "leftover_unparsed": 0, "leftover_finetuned_on": 22, "pseudo_labels": 22},
        "pseudo_labels": {"normal": 17, "anomalous": 5},
        "threshold": {"value": 0.5061, "chosen_on": "22 pseudo-labelled target sequences"},
        "artifact": "outputs/demo/fused",
        "seconds": 151.0,
    }
    s.update(changes)
    return s


def test_summary_of_a_healthy_run_has_a_dozen_lines_and_the_next_commands():
    text = format_summary(_summary(), "--config configs/demo.yaml")
    lines = text.splitlines()
    assert lines[0] == "FusionLog HDFS -> BGL finished in 2:31"
    assert 11 <= len(lines) <= 16, text
    assert "HDFS 2,200 sequences (69 anomalous); BGL 100 sequences (target, labels not read)" in text
    assert "tau 0.543: 78 general, 22 proprietary" in text
    assert "llm (llama_cpp), threshold 0.431 calibrated on 32 source-val sequences" in text
    # clean normal/anomalous = (clean - clean_anomalous)/clean_anomalous, per round
    assert "3 rounds, pool 22; clean normal/anomalous per round: 4/1 3/0 0/0" in text
    assert "fine-tuned in round 1, 2; 14 leftovers took the teacher's label, fine-tuned on 22" in text
    assert "0.506, chosen on 22 pseudo-labelled target sequences" in text
    assert "fusionlog evaluate --config configs/demo.yaml" in text
    assert "fusionlog report outputs/demo" in text and "serve run serve_config.yaml" in text
    assert "warnings" not in text


def test_summary_never_prints_a_target_anomaly_count():
    s = _summary()
    s["data"]["target"]["anomalous"] = 28  # even if a caller put one there, it is a label: not shown
    assert "28" not in format_summary(s)


def test_warnings_say_in_plain_words_what_went_wrong():
    rounds = [_round(r, 22, 0, llm_anomalous=0) for r in range(5)]
    s = _summary(distill={**_summary()["distill"], "rounds": rounds, "leftover_finetuned_on": 0, "pool_capped": 40},
                 pseudo_labels={"normal": 22, "anomalous": 0},
                 teacher={"kind": "llm", "calibrated": False, "threshold": 0.5,
                          "stats": {"requests": 110, "labelled": 100, "unanswered": 10}})
    found = warnings(s)
    assert "no fine-tuning happened (no clean sample in any round): the fused weights are the small model's" in found
    assert "pseudo-labels of one class only (all 22 normal): nothing was learnt from them" in found
    assert "the teacher left 10 of its 110 requests unanswered (see fusionlog.log)" in found
    assert "the teacher called every sequence it answered normal" in found
    assert "distill.max_pool: 40 proprietary sequences never reached the teacher" in found
    text = format_summary(s)
    assert text.count("! ") == len(found) and "--config outputs/demo/config.yaml" in text


def test_warnings_when_the_teacher_is_silent_or_there_was_no_distillation():
    s = _summary(teacher={"kind": "llm", "stats": {"requests": 22, "labelled": 0, "unanswered": 22}})
    assert "the teacher answered none of its 22 requests: is it available?" in warnings(s)
    s = _summary(distill=None, distill_skipped="distill.enabled=false", teacher=None, pseudo_labels=None)
    assert warnings(s) == ["no distillation (distill.enabled=false): the fused model is the small model"]
    assert "distill " not in format_summary(s)


def _row(method, p, r, f1, auroc, threshold=0.5, **extra):
    return {"pair": "HDFS->BGL", "method": method, "precision": p, "recall": r, "f1": f1, "auroc": auroc,
            "threshold": threshold, "evaluated": 100, "anomalous": 28, **extra}


def test_evaluation_table_puts_the_baselines_beside_the_model():
    rows = [_row("fusionlog", 0.2, 0.071, 0.105, 0.443, 0.5208, threshold_chosen_on="source-val"),
            _row("keyword rule", 0.483, 1.0, 0.651, 0.792), _row("flag everything", 0.28, 1.0, 0.438, 0.5)]
    lines = format_evaluation(rows).splitlines()
    assert lines[0] == "HDFS->BGL: 100 target sequences, 28 anomalous (labels read by the evaluator only)"
    assert lines[2].split() == ["fused", "model", "0.200", "0.071", "0.105", "0.443", "0.521,", "chosen", "on",
                                "source-val"]
    assert lines[3].split()[:6] == ["keyword", "rule", "0.483", "1.000", "0.651", "0.792"]
    assert lines[4].split() == ["flag", "everything", "0.280", "1.000", "0.438", "0.500", "-"]
    assert lines[5].startswith("F1 not above the keyword rule (0.651)") and "no better than chance" in lines[6]
    assert max(map(len, lines)) <= 100


def test_evaluation_verdict_when_the_model_wins():
    rows = [_row("meta", 0.9, 0.8, 0.847, 0.95), _row("keyword rule", 0.483, 1.0, 0.651, math.nan)]
    text = format_evaluation(rows)
    assert "small model (meta)" in text and "n/a" in text
    assert text.endswith("F1 above every label-free baseline (best: keyword rule, 0.651).")
