"""Prompts and answers (FusionLog §III-D): the messages an LLM sees, and the strict reading of its reply.

The texts live in ``fusionlog/llm/prompts/*.txt``: context, retrieved examples (content,
small-model label, confidence), then the query ("These examples are inserted into the prompt").
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Optional

from fusionlog.config import LLMConfig
from fusionlog.teachers.base import LabelRequest

ANSWERS = ("normal", "anomalous")  # label 0, label 1
GRAMMAR = 'root ::= "normal" | "anomalous"'  # GBNF for llama.cpp (in-process and llama_cpp.server)
PROMPTS = Path(__file__).parent / "prompts"


@lru_cache(maxsize=None)
def _prompt(name: str) -> str:
    return (PROMPTS / f"{name}.txt").read_text().strip("\n")


def _format_events(templates: list[str], cap: int) -> tuple[str, str]:
    """Numbered event lines (the first ``cap``) and a note saying how many are shown."""
    shown = templates[:cap]
    lines = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(shown))
    if len(templates) > cap:
        note = f"the first {cap} of {len(templates)} events"
    else:
        note = f"{len(templates)} event" + ("" if len(templates) == 1 else "s")
    return lines, note


def build_messages(req: LabelRequest, cfg: LLMConfig) -> list[dict]:
    """System + user chat messages: context, examples, then the query."""
    blocks = []
    for i, ex in enumerate(req.examples):
        events, _ = _format_events(ex.templates, cfg.max_example_templates)
        blocks.append(_prompt("example").format(index=i + 1, label=ANSWERS[int(ex.label)],
                                                confidence=float(ex.confidence), events=events))
    examples = "\n\n".join(blocks) + "\n\n" if blocks else ""
    events, shown = _format_events(req.templates, cfg.max_templates)
    return [{"role": "system", "content": _prompt("system").format(system=req.system)},
            {"role": "user", "content": _prompt("query").format(examples=examples, shown=shown, events=events)}]


_ANSWER_RE = re.compile(r"[\W_]*(normal|anomalous)[\W_]*")


def parse_answer(text: str) -> Optional[int]:
    """1 for "anomalous", 0 for "normal" (case, spaces, quotes and punctuation around it ignored); else None.

    Strict on purpose: "not normal" or "anomaly detected" are None, never guessed.
    """
    if not isinstance(text, str):
        return None
    m = _ANSWER_RE.fullmatch(text.strip().lower())
    return None if m is None else ANSWERS.index(m.group(1))
