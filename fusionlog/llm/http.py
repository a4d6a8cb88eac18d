"""Any OpenAI-compatible endpoint (``vllm serve``, llama_cpp.server, a hosted API) through Ray Data's
``HttpRequestProcessorConfig`` + ``build_processor``: batching, concurrency, a qps limit and transport
retries, with a choice/grammar constraint where the server supports one.
"""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from functools import partial
from typing import Optional, Sequence

from fusionlog.config import LLMConfig
from fusionlog.llm.base import LabelResult, LLMBackendError, LLMTeacher
from fusionlog.llm.prompt import ANSWERS, GRAMMAR, build_messages, parse_answer
from fusionlog.teachers.base import LabelRequest


def _constraint_fields(constraint: str) -> dict:
    """Request fields that restrict the answer to normal|anomalous, per server family."""
    if constraint == "structured_outputs":  # vLLM >= 0.11 OpenAI server
        return {"structured_outputs": {"choice": list(ANSWERS)}}
    if constraint == "guided_choice":  # older vLLM OpenAI server
        return {"guided_choice": list(ANSWERS)}
    if constraint == "grammar":  # llama_cpp.server / llama.cpp GBNF
        return {"grammar": GRAMMAR}
    return {}


def chat_payload(req: LabelRequest, cfg: LLMConfig) -> dict:
    """The OpenAI chat-completions body for one request."""
    return {"model": cfg.model or "default", "messages": build_messages(req, cfg), "temperature": cfg.temperature,
            "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, **_constraint_fields(cfg.constraint)}


def _client_session(timeout_s: float):
    """aiohttp session with a total timeout, so a stalled server never hangs a Ray Data worker."""
    import aiohttp

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))


def _http_preprocess(row: dict) -> dict:
    return {"idx": row["idx"], "payload": json.loads(row["payload_json"])}


def _http_postprocess(row: dict) -> dict:
    """The answer text, or the server's error, from one chat-completions response."""
    resp = row.get("http_response") or {}
    try:
        text, error = resp["choices"][0]["message"]["content"] or "", ""
    except (KeyError, IndexError, TypeError):
        text, error = "", f"bad response: {json.dumps(resp, default=str)[:300]}"
    return {"idx": int(row["idx"]), "text": text, "error": error}


class HttpBackend(LLMTeacher):
    """OpenAI-compatible endpoint through Ray Data's HTTP request processor.

    Ray Data gives batching, ``concurrency`` workers, a ``qps`` limit and transport retries
    (429/5xx/connection errors, exponential back-off). Its HTTP stage raises for a row whose
    transport retries run out, which fails the whole dataset; so the endpoint is checked before
    each call, and a mid-run failure marks every row of that call with the error instead of raising.
    """

    deterministic = False  # sampled answers
    calibratable = False  # 0/1 answers

    def __init__(self, cfg: LLMConfig, threshold: float = 0.5):
        super().__init__(cfg, threshold)
        try:
            from ray.data.llm import HttpRequestProcessorConfig, build_processor  # noqa: F401
        except ImportError as e:
            raise LLMBackendError(f"llm.backend 'http' needs ray[data] 2.60 with ray.data.llm: {e}") from e
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self.check_reachable()

    def check_reachable(self) -> None:
        """GET <base_url>/models with a bounded timeout; any HTTP answer counts as reachable."""
        url = self.cfg.base_url.rstrip("/") + "/models"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=self.headers),
                                        timeout=min(self.cfg.timeout_s, 30)):
                pass
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError) as e:
            raise LLMBackendError(f"LLM endpoint llm.base_url={self.cfg.base_url!r} is unreachable ({e}); "
                                  "start the server or fix the URL") from e

    def _processor(self):
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        config = HttpRequestProcessorConfig(url=self.url, headers=self.headers, qps=self.cfg.qps or None,
                                            max_retries=self.cfg.max_retries, batch_size=self.cfg.batch_size,
                                            concurrency=self.cfg.concurrency,
                                            session_factory=partial(_client_session, self.cfg.timeout_s))
        return build_processor(config, preprocess=_http_preprocess, postprocess=_http_postprocess)

    def _send(self, payloads: dict[int, dict]) -> dict[int, tuple[str, str]]:
        """{idx: (text, error)} for every payload; never raises for a failed row."""
        import ray

        rows = [{"idx": i, "payload_json": json.dumps(p)} for i, p in payloads.items()]
        try:
            out = self._processor()(ray.data.from_items(rows)).take_all()
        except Exception as e:  # transport retries exhausted for some row: Ray Data failed the whole run
            self.check_reachable()
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            return {i: ("", msg) for i in payloads}
        got = {int(r["idx"]): (r.get("text") or "", r.get("error") or r.get("__inference_error__") or "") for r in out}
        return {i: got.get(i, ("", "no response row")) for i in payloads}

    def answer(self, requests: Sequence[LabelRequest]) -> list[LabelResult]:
        if not requests:
            return []
        results: list[Optional[LabelResult]] = [None] * len(requests)
        pending = {i: chat_payload(r, self.cfg) for i, r in enumerate(requests)}
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self.stats["retries"] += len(pending)
            answers = self._send(pending)
            for i, (text, error) in answers.items():
                seq_id = requests[i].seq_id
                label = parse_answer(text) if not error else None
                if error:
                    results[i] = LabelResult(seq_id, -1, math.nan, text, error=error)
                elif label is not None:
                    results[i] = LabelResult(seq_id, label, float(label), text)
                else:
                    results[i] = LabelResult(seq_id, -1, math.nan, text)
            pending = {i: p for i, p in pending.items() if results[i].label == -1 and not results[i].error}
            if not pending:
                break
        self._count(results)
        return results
