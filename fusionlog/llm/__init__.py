"""LLM teachers (``teacher.kind=llm``), one small file per back-end, chosen by ``llm.backend``:

* ``llama_cpp`` - in-process llama-cpp-python on CPU (llama_cpp.py);
* ``http`` - any OpenAI-compatible endpoint through Ray Data's HTTP processor (http.py);
* ``vllm`` - vLLM engine actors through Ray Data (vllm.py, GPUs).

Prompts and the strict answer parser are in prompt.py; ``python -m fusionlog.llm.server`` serves a
GGUF over HTTP with the CPU workaround (server.py).
"""
from __future__ import annotations

from fusionlog.config import LLMConfig
from fusionlog.llm.base import LabelResult, LLMBackendError, LLMTeacher

__all__ = ["LabelResult", "LLMBackendError", "LLMTeacher", "make_llm"]


def make_llm(cfg: LLMConfig, threshold: float = 0.5) -> LLMTeacher:
    """The back-end named by ``llm.backend``; raises LLMBackendError when it cannot serve."""
    if cfg.mode == "loglik" and cfg.backend != "llama_cpp":
        raise LLMBackendError(f"llm.mode 'loglik' needs llm.backend 'llama_cpp' (got {cfg.backend!r}); "
                              "use llm.mode=generate")
    if cfg.backend == "llama_cpp":
        from fusionlog.llm.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(cfg, threshold)
    if cfg.backend == "http":
        from fusionlog.llm.http import HttpBackend

        return HttpBackend(cfg, threshold)
    if cfg.backend == "vllm":
        from fusionlog.llm.vllm import VllmBackend

        return VllmBackend(cfg, threshold)
    raise LLMBackendError(f"unknown llm.backend {cfg.backend!r}; allowed: llama_cpp, http, vllm")
