"""Prompt building, strict answer parsing, threshold calibration and LLM config checks (no model needed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fusionlog.config import FusionLogConfig, LLMConfig, TeacherConfig, validate
from fusionlog.llm import LabelResult, LLMBackendError, LLMTeacher, make_llm
from fusionlog.llm.http import _http_postprocess, chat_payload
from fusionlog.llm.llama_cpp import _softmax2
from fusionlog.llm.prompt import GRAMMAR, build_messages, parse_answer
from fusionlog.metrics import best_f1_threshold
from fusionlog.teachers import Example, LabelRequest

SYSTEM = ("You are an expert in log anomaly detection for the BGL system. You read a sequence of log event "
          "templates (variable parts are masked as <*>) and decide whether the sequence shows a failure or "
          "abnormal behaviour of BGL. Labelled example sequences from BGL are given for reference; their labels "
          "come from a smaller model and carry its confidence. Answer with exactly one word: normal or anomalous.")


# ----------------------------------------------------------------------------- parse_answer


@pytest.mark.parametrize("text,label", [
    ("normal", 0), ("anomalous", 1), ("Anomalous", 1), ("  NORMAL\n", 0), ("anomalous.", 1), ('"normal"', 0),
    ("**Anomalous**", 1), ("Normal!", 0)])
def test_parse_answer_accepts_the_two_words(text, label):
    assert parse_answer(text) == label


@pytest.mark.parametrize("text", ["", "not normal", "anomaly", "normal or anomalous", "abnormal",
                                  "The sequence is anomalous", "normally", None])
def test_parse_answer_is_strict(text):
    assert parse_answer(text) is None


# ----------------------------------------------------------------------------- build_messages


def test_build_messages_exact_content():
    req = LabelRequest("s1", "BGL", ["a <*>", "b", "c"],
                       [Example(["x", "y"], 1, 0.934), Example(["z"], 0, 1.0)])
    cfg = LLMConfig(max_templates=2, max_example_templates=1)
    assert build_messages(req, cfg) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content":
            "Example 1 (label: anomalous, small-model confidence 0.93):\n1. x\n\n"
            "Example 2 (label: normal, small-model confidence 1.00):\n1. z\n\n"
            "Log sequence to classify (the first 2 of 3 events):\n1. a <*>\n2. b\n"
            "Is this log sequence normal or anomalous? Answer with exactly one word: normal or anomalous."}]


def test_build_messages_without_examples():
    msgs = build_messages(LabelRequest("s", "HDFS", ["only event"], []), LLMConfig())
    assert msgs[1]["content"] == ("Log sequence to classify (1 event):\n1. only event\n"
                                  "Is this log sequence normal or anomalous? Answer with exactly one word: "
                                  "normal or anomalous.")
    assert "HDFS system" in msgs[0]["content"]


@pytest.mark.parametrize("constraint,fields", [
    ("structured_outputs", {"structured_outputs": {"choice": ["normal", "anomalous"]}}),
    ("guided_choice", {"guided_choice": ["normal", "anomalous"]}),
    ("grammar", {"grammar": GRAMMAR}), ("none", {})])
def test_chat_payload_constraints(constraint, fields):
    cfg = LLMConfig(backend="http", mode="generate", model="m", constraint=constraint)
    payload = chat_payload(LabelRequest("s", "BGL", ["e"], []), cfg)
    assert {k: payload[k] for k in ("model", "temperature", "top_p", "max_tokens")} == {
        "model": "m", "temperature": 1.0, "top_p": 0.8, "max_tokens": 8}
    assert {k: v for k, v in payload.items() if k not in ("model", "messages", "temperature", "top_p",
                                                           "max_tokens")} == fields


def test_http_postprocess_reads_text_or_error():
    ok = {"idx": 3, "http_response": {"choices": [{"message": {"content": "anomalous"}}]}}
    assert _http_postprocess(ok) == {"idx": 3, "text": "anomalous", "error": ""}
    bad = _http_postprocess({"idx": 1, "http_response": {"error": {"message": "model not found"}}})
    assert bad["text"] == "" and "model not found" in bad["error"]


# ----------------------------------------------------------------------------- calibration (the one picker)


def test_best_f1_threshold_on_teacher_scores():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    y = np.array([1, 0, 1, 1, 0, 0])
    # t=0.9: F1 2/4=0.5; t=0.8: 2/5=0.4; t=0.7: 4/6=0.667; t=0.6: 6/7=0.857; t=0.3: 6/8; t=0.2: 6/9
    assert best_f1_threshold(y, p) == pytest.approx(0.45)  # halfway from 0.6 to the next lower score


def test_best_f1_threshold_ties_and_nan():
    p = np.array([0.5, 0.5, 0.1, np.nan])
    y = np.array([1, 0, 0, 1])  # the NaN row (a teacher with no answer) is left out
    assert best_f1_threshold(y, p) == pytest.approx(0.3)  # the tie group {0.5, 0.5} is taken whole: F1 = 2/3
    assert best_f1_threshold(np.array([1, 1]), np.array([0.4, 0.4])) == 0.4


def test_best_f1_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="no anomalous"):
        best_f1_threshold(np.array([0, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="allowed: 0"):
        best_f1_threshold(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="same length"):
        best_f1_threshold(np.array([0, 1]), np.array([0.1]))


def test_softmax2():
    assert _softmax2(-1.0, -1.0) == 0.5
    assert math.isclose(_softmax2(math.log(0.25), math.log(0.75)), 0.75)
    assert _softmax2(0.0, -1e6) == pytest.approx(0.0) and _softmax2(-1e6, 0.0) == 1.0


# ----------------------------------------------------------------------------- interface and config


def test_llm_teacher_scores_answers_and_counts_them():
    class Echo(LLMTeacher):
        def answer(self, requests):
            out = []
            for r in requests:
                y = parse_answer(r.templates[0])
                out.append(LabelResult(r.seq_id, -1 if y is None else y, math.nan if y is None else float(y),
                                       r.templates[0], error="boom" if r.templates[0] == "!" else ""))
            self._count(out)
            return out

    b = Echo(LLMConfig(mode="generate"))
    labels, scores = b.label([LabelRequest(str(i), "X", [t], []) for i, t in
                              enumerate(["normal", "??", "!", "anomalous"])])
    assert labels.tolist() == [0, -1, -1, 1] and scores[0] == 0.0 and scores[3] == 1.0
    assert b.stats == {"requests": 4, "labelled": 2, "unanswered": 2, "unparseable": 1, "retries": 0, "errors": 1}


def test_llm_config_defaults_follow_the_paper():
    c = LLMConfig()
    assert (c.backend, c.mode, c.temperature, c.top_p) == ("llama_cpp", "loglik", 1.0, 0.8)


def test_llm_config_validation_lists_every_problem():
    cfg = FusionLogConfig()
    cfg.llm = LLMConfig(backend="gpt", mode="vibes", constraint="regex", top_p=1.5, max_retries=-1,
                        model_path="/no/such.gguf", n_threads=-2)
    cfg.teacher = TeacherConfig(threshold=1.5)
    problems = validate(cfg)
    assert any(p.startswith("llm.backend: 'gpt'; allowed: llama_cpp, http, vllm") for p in problems)
    assert any(p.startswith("llm.mode: 'vibes'") for p in problems)
    assert any(p.startswith("llm.constraint: 'regex'") for p in problems)
    assert "llm.top_p: 1.5; must be in (0, 1]" in problems
    assert "teacher.threshold: 1.5; must be in [0, 1]" in problems
    assert "llm.max_retries: -1; must be >= 0" in problems
    assert "llm.n_threads: -2; must be >= 0 (0 = all cores)" in problems
    assert any("llm.model_path: '/no/such.gguf' does not exist" in p for p in problems)


def test_llm_config_validation_cross_checks():
    cfg = FusionLogConfig()
    cfg.llm = LLMConfig(backend="http", mode="loglik", base_url="127.0.0.1:8000")
    problems = [p for p in validate(cfg) if p.startswith("llm")]
    assert any("needs llm.backend 'llama_cpp'" in p for p in problems)
    assert any(p.startswith("llm.base_url") for p in problems)
    cfg.llm = LLMConfig(backend="vllm", mode="generate")
    assert any(p.startswith("llm.model: the vllm backend") for p in validate(cfg))
    cfg.llm = LLMConfig()
    assert not [p for p in validate(cfg) if p.startswith("llm")]


def test_llm_section_is_checked_only_for_an_llm_teacher():
    cfg = FusionLogConfig()
    cfg.llm = LLMConfig(backend="gpt")
    cfg.teacher = TeacherConfig(kind="keyword")
    assert not [p for p in validate(cfg) if p.startswith("llm")]
    cfg.teacher = TeacherConfig(kind="committee", members=["keyword", "llm"])
    assert any(p.startswith("llm.backend") for p in validate(cfg))


def test_make_llm_rejects_loglik_over_http():
    with pytest.raises(LLMBackendError, match="loglik"):
        make_llm(LLMConfig(backend="http", mode="loglik"))
