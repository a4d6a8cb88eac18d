"""vLLM engine replicas through Ray Data's ``vLLMEngineProcessorConfig`` (GPU machines).

Written against Ray 2.60's documented API; vLLM does not install on CPU machines, so here it is
tested up to building its configuration (docs/install.md). It shares the retry and parse loop of
the HTTP back-end; engine failures arrive per row (``should_continue_on_error``).
"""
from __future__ import annotations

import json
from functools import partial

from fusionlog.config import LLMConfig
from fusionlog.llm.base import LLMBackendError, LLMTeacher
from fusionlog.llm.http import HttpBackend
from fusionlog.llm.prompt import ANSWERS


def vllm_processor_config(cfg: LLMConfig):
    """``vLLMEngineProcessorConfig`` for batched offline labelling on GPUs (ENGINEERING.md, Ray Data LLM)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(model_source=cfg.model,
                                     engine_kwargs={"max_model_len": cfg.n_ctx, **cfg.vllm_engine_kwargs},
                                     concurrency=cfg.concurrency, batch_size=cfg.batch_size,
                                     should_continue_on_error=True)


def vllm_sampling_params(cfg: LLMConfig) -> dict:
    """Per-row sampling parameters; ``structured_outputs`` restricts the answer to the two words."""
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
            "structured_outputs": {"choice": list(ANSWERS)}}


def _vllm_preprocess(row: dict, sampling_params: dict) -> dict:
    return {"idx": row["idx"], "messages": json.loads(row["messages_json"]), "sampling_params": sampling_params}


def _vllm_postprocess(row: dict) -> dict:
    return {"idx": int(row["idx"]), "text": row.get("generated_text") or "", "error": ""}


class VllmBackend(HttpBackend):
    """vLLM engine replicas via Ray Data; shares the retry/parse loop of the HTTP back-end."""

    def __init__(self, cfg: LLMConfig, threshold: float = 0.5):
        LLMTeacher.__init__(self, cfg, threshold)
        try:
            from ray.data.llm import build_processor, vLLMEngineProcessorConfig  # noqa: F401
        except ImportError as e:
            raise LLMBackendError(f"llm.backend 'vllm' needs ray[llm]==2.60.0 and vllm==0.29.0 on GPUs: {e}") from e
        self.processor = self._build()

    def _build(self):
        from ray.data.llm import build_processor

        return build_processor(vllm_processor_config(self.cfg),
                               preprocess=partial(_vllm_preprocess, sampling_params=vllm_sampling_params(self.cfg)),
                               postprocess=_vllm_postprocess)

    def check_reachable(self) -> None:
        """Engine failures arrive per row (should_continue_on_error); nothing to probe."""

    def _send(self, payloads: dict[int, dict]) -> dict[int, tuple[str, str]]:
        import ray

        rows = [{"idx": i, "messages_json": json.dumps(p["messages"])} for i, p in payloads.items()]
        try:
            out = self.processor(ray.data.from_items(rows)).take_all()
        except Exception as e:
            raise LLMBackendError(f"vLLM batch failed (model {self.cfg.model!r}): {type(e).__name__}: {e}") from e
        got = {int(r["idx"]): (r.get("text") or "", r.get("__inference_error__") or r.get("error") or "") for r in out}
        return {i: got.get(i, ("", "no response row")) for i in payloads}
