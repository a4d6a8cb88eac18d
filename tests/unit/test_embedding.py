import math

import numpy as np
import pytest
from gensim.models import KeyedVectors

from fusionlog.config import EmbeddingConfig, FusionLogError
from fusionlog.embedding import embed_templates, idf_weights, load_word_vectors, tfidf_vectors, tokenize


def test_tokenize_drops_wildcards_numbers_and_splits_camel_case():
    assert tokenize("PacketResponder <*> for block blk_<*> terminating") == \
        ["packet", "responder", "for", "block", "blk", "terminating"]
    assert tokenize("BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.0.0.1:50010") == \
        ["block", "name", "system", "add", "stored", "block", "block", "map", "updated"]
    assert tokenize("<*> <NUM> 42") == []


def test_idf_exact():
    idf = idf_weights([["a", "b"], ["a"]])
    assert idf["a"] == pytest.approx(math.log(3 / 3) + 1)
    assert idf["b"] == pytest.approx(math.log(3 / 2) + 1)


def test_tfidf_weighted_sum_and_oov_counted():
    kv = KeyedVectors(2)
    kv.add_vectors(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    idf = {"a": 1.0, "b": 2.0, "zz": 5.0}
    vecs, rep = tfidf_vectors([["a", "b", "b", "zz"], ["zz"]], idf, kv)
    np.testing.assert_allclose(vecs[0], [0.25 * 1.0, 0.5 * 2.0])
    np.testing.assert_allclose(vecs[1], [0.0, 0.0])
    assert rep.oov_tokens == 2 and rep.events_without_vector == 1 and rep.oov_words["zz"] == 2


def test_default_glove_vectors_and_user_file(tmp_path):
    kv = load_word_vectors(EmbeddingConfig())
    assert kv.vector_size == 50 and "block" in kv.key_to_index
    glove = tmp_path / "tiny.txt"
    glove.write_text("block 1 0 0\nerror 0 1 0\n")
    tiny = load_word_vectors(EmbeddingConfig(vectors_path=str(glove)))
    assert tiny.vector_size == 3
    w2v = tmp_path / "tiny.vec"
    w2v.write_text("2 3\nblock 1 0 0\nerror 0 1 0\n")
    assert load_word_vectors(EmbeddingConfig(vectors_path=str(w2v))).vector_size == 3
    vecs, rep = embed_templates(["block <*> error", "nothing_known_qqq"], EmbeddingConfig(vectors_path=str(glove)))
    assert vecs.shape == (2, 3) and rep.events_without_vector == 1
    with pytest.raises(FileNotFoundError):
        load_word_vectors(EmbeddingConfig(vectors_path=str(tmp_path / "none.txt")))
    bad = tmp_path / "bad.txt"
    bad.write_text("block 1 0\nerror 0 1 0 0\n")
    with pytest.raises(FusionLogError, match="cannot read"):
        load_word_vectors(EmbeddingConfig(vectors_path=str(bad)))


def test_events_without_a_known_word_get_an_ngram_vector_not_zeros():
    import numpy as np

    from fusionlog.config import EmbeddingConfig
    from fusionlog.embedding import embed_templates, ngram_vector

    a, b = ngram_vector("<*>:<*> <*>:<*>", 50), ngram_vector("<*>:<*> <*>:<*>", 50)
    assert np.array_equal(a, b) and abs(np.linalg.norm(a) - 1) < 1e-5
    cousin, other = ngram_vector("<*>:<*> <*>:<*> <*>", 50), ngram_vector("qwzx", 50)
    assert a @ cousin > a @ other
    vectors, report = embed_templates(["data TLB error interrupt", "<*>:<*> <*>:<*>", ""], EmbeddingConfig())
    assert report.events_without_vector == 2 and (np.linalg.norm(vectors, axis=1) > 0).all()
    assert report.to_dict()["events_with_ngram_vector"] == 2
