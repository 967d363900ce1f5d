"""Vector, neighbour and context-probability queries over one loaded model; no HTTP here.

Cosine searches run on a FAISS index over the L2-normalised input vectors (exact IndexFlatIP, or
IndexHNSWFlat for large vocabularies). Answers for vocabulary words come from tables computed once per
model (service.precompute) when the vocabulary is small enough, else from a search per query.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import faiss
import numpy as np

from service import precompute
from service.settings import DEFAULTS
from trainer import artifact


class UnknownWord(LookupError):
    """A word that is not in the vocabulary."""

    def __init__(self, word: str):
        super().__init__(word)
        self.word = word


class BadQuery(ValueError):
    """A query that has no answer: a vector of the wrong shape, or one of zero length."""


class ContextUnavailable(RuntimeError):
    """The model carries no output vectors (imported from a word2vec file), so no context distribution."""


class Embeddings:
    """One model and its search structures.

    settings: the service settings (see service.settings.DEFAULTS; missing keys take the defaults).
    build_threads: threads for anything that has to be built here rather than read from the cache.
    """

    def __init__(self, model: artifact.Model, settings: Mapping | None = None, build_threads: int = 1):
        opts = {**DEFAULTS, **(settings or {})}
        self.model = model
        self.words = model.words
        self.max_k = opts["MAX_K"]
        self.index_kind = opts["INDEX"]
        self._rows = model.index
        # float32 (V, N) each, memory-mapped; plain views, as np.memmap's indexing costs more per request
        self._vectors = np.asarray(model.input_vectors)
        self._output = None if model.output_vectors is None else np.asarray(model.output_vectors)
        faiss.omp_set_num_threads(opts["FAISS_THREADS"])
        unit, self._norms = precompute.unit_rows(self._vectors)
        folder = precompute.cache_folder(model, opts["CACHE_DIR"])
        self._hnsw = (opts["HNSW_M"], opts["HNSW_EF_CONSTRUCTION"], opts["HNSW_EF_SEARCH"])
        if self.index_kind == "hnsw":
            self._index = precompute.hnsw_index(model, unit, opts["HNSW_M"], opts["HNSW_EF_CONSTRUCTION"],
                                                folder, build_threads)
            self._index.hnsw.efSearch = opts["HNSW_EF_SEARCH"]
        else:
            self._index = faiss.IndexFlatIP(model.dim)
            self._index.add(unit)
        tables = (2 <= model.vocab_size <= opts["TABLES_MAX_WORDS"]
                  and model.vocab_size * self.max_k <= precompute.MAX_TABLE_ENTRIES)
        # Only the exact index gets a similar table: HNSW is chosen to avoid per-model quadratic work.
        self._similar = (precompute.similar_table(unit, min(self.max_k, model.vocab_size - 1), folder,
                                                  build_threads)
                         if tables and self.index_kind == "flat" else None)
        self._context = (precompute.context_table(model, min(self.max_k, model.vocab_size), folder,
                                                  build_threads)
                         if tables and self._output is not None else None)

    # ------------------------------------------------------------------------------- facts

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def has_context(self) -> bool:
        return self._output is not None

    def describe(self) -> dict:
        """Plain facts about the loaded model and its search structures."""
        index = {"type": self.index_kind, "exact": self.index_kind == "flat"}
        if self.index_kind == "hnsw":
            index.update(zip(("m", "ef_construction", "ef_search"), self._hnsw))
        return {"model": self.model.path.name, "vocab_size": self.vocab_size, "dim": self.dim,
                "objective": self.model.objective, "index": index, "context_probs": self.has_context,
                "precomputed": {"similar": self._similar is not None, "context": self._context is not None}}

    # ----------------------------------------------------------------------------- queries

    def row(self, word: str) -> int:
        try:
            return self._rows[word]
        except KeyError:
            raise UnknownWord(word) from None

    def vector(self, word: str) -> list[float]:
        return self._vectors[self.row(word)].tolist()

    def vectors(self, words: Sequence[str]) -> tuple[dict[str, list[float]], list[str]]:
        """({word: vector} for the known words, the unknown words in request order, once each)."""
        found = {w: self._rows[w] for w in words if w in self._rows}
        missing = list(dict.fromkeys(w for w in words if w not in self._rows))
        rows = self._vectors[list(found.values())].tolist()
        return dict(zip(found, rows)), missing

    def similar(self, word: str, k: int) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to `word`, best first, `word` excluded."""
        row = self.row(word)
        if self._similar is not None:
            ids, scores = self._similar
            return self._named(ids[row, :k], scores[row, :k])
        return self._search(self._unit(row), k, exclude={row})

    def analogy(self, positive: Sequence[str], negative: Sequence[str], k: int) -> list[tuple[str, float]]:
        """Neighbours of the normalised mean of the unit vectors of `positive` (weight +1) and `negative`
        (weight -1), input words excluded: the rule of gensim's KeyedVectors.most_similar."""
        rows = [self.row(w) for w in (*positive, *negative)]
        if not rows:
            raise BadQuery("give at least one positive or negative word")
        weights = np.array([1.0] * len(positive) + [-1.0] * len(negative), dtype=np.float32)
        units = self._vectors[rows] / self._safe_norms(rows)[:, None]  # float32 (n, N)
        mean = (weights[:, None] * units).mean(axis=0)
        return self._search(self._normalised(mean, "the positive and negative words cancel out"),
                            k, exclude=set(rows))

    def similar_to_vector(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to any vector of the model's dimension."""
        vec = np.asarray(vector, dtype=np.float64)
        if vec.shape != (self.dim,) or not np.isfinite(vec).all():
            raise BadQuery(f"vector must be {self.dim} finite numbers")
        scale = np.abs(vec).max()
        if scale > 0:
            vec = vec / scale  # large finite values would overflow the norm
        return self._search(self._normalised(vec, "vector has zero length: cosine is undefined"), k)

    def context_probs(self, word: str, k: int) -> list[tuple[str, float]]:
        """The k most probable context words w of centre word `word` (= c) under the model's softmax
        p(w | c) = exp(u_w . v_c) / sum_x exp(u_x . v_c), over the whole vocabulary, most probable first."""
        if self._output is None:
            raise ContextUnavailable("this model has no output vectors (imported word2vec vectors), "
                                     "so it defines no context distribution")
        row = self.row(word)
        if self._context is not None:
            ids, scores, lse = self._context
            ids, scores, lse = ids[row, :k], scores[row, :k], lse[row]
        else:
            all_scores = (self._output @ self._vectors[row])[None, :]  # float32 (1, V)
            lse = precompute.log_sum_exp(all_scores)[0]
            ids, scores = (a[0] for a in precompute.top_k(all_scores, k))
        return self._named(ids, np.exp(scores.astype(np.float64) - lse))

    # ---------------------------------------------------------------------------- helpers

    def _named(self, ids: np.ndarray, values: np.ndarray) -> list[tuple[str, float]]:
        words = self.words
        return [(words[i], v) for i, v in zip(ids.tolist(), values.tolist())]

    def _safe_norms(self, rows) -> np.ndarray:
        norms = self._norms[rows]
        return np.where(norms > 0, norms, 1).astype(np.float32)

    def _unit(self, row: int) -> np.ndarray:
        return self._vectors[row] / self._safe_norms([row])

    @staticmethod
    def _normalised(vec: np.ndarray, problem: str) -> np.ndarray:
        norm = float(np.linalg.norm(vec))
        if not norm > 0:
            raise BadQuery(problem)
        return (vec / norm).astype(np.float32)

    def _search(self, query: np.ndarray, k: int, exclude: set[int] = frozenset()) -> list[tuple[str, float]]:
        """k best rows of the index for one unit query (N,), skipping `exclude`."""
        scores, ids = self._index.search(query.reshape(1, -1), min(k + len(exclude), self.vocab_size))
        hits = [(i, s) for i, s in zip(ids[0].tolist(), scores[0].tolist()) if i >= 0 and i not in exclude]
        words = self.words
        return [(words[i], s) for i, s in hits[:k]]
