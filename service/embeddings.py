"""Vector, neighbour, map, prefix and context-probability queries over one model and its derived data; no HTTP.

Cosines are inner products of the unit input vectors (service.derived). Answers for vocabulary words come
from tables computed once per model when they were affordable, else from a search: the approximate index
when there is one, else an exact scan of the one shared copy of the unit vectors.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import faiss
import numpy as np

from service import arrays, indexes
from service.derived import Derived
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
    """Queries over `model` (its raw vectors: /vector, /context-probs) and `derived` (everything else).

    settings: the service settings (see service.settings.DEFAULTS; missing keys take the defaults)."""

    def __init__(self, model: artifact.Model, derived: Derived, settings: Mapping | None = None):
        opts = {**DEFAULTS, **(settings or {})}
        self.model, self.derived = model, derived
        self.max_k = opts["MAX_K"]
        self._words = derived.words
        self._unit = derived.unit  # float32 (V, N), mapped
        # plain views, as np.memmap's indexing costs more per request
        self._vectors = np.asarray(model.input_vectors)
        self._output = None if model.output_vectors is None else np.asarray(model.output_vectors)
        faiss.omp_set_num_threads(opts["FAISS_THREADS"])
        self._index_facts = {"type": derived.plan.kind, "exact": derived.plan.kind == "flat"}
        if derived.plan.kind == "hnsw":
            derived.index.hnsw.efSearch = opts["HNSW_EF_SEARCH"]
            self._index_facts.update(m=opts["HNSW_M"], ef_construction=opts["HNSW_EF_CONSTRUCTION"],
                                     ef_search=opts["HNSW_EF_SEARCH"])
        self._searched = derived.index or derived.unit_index  # what _search asks
        if derived.plan.kind == "ivf":
            dial = derived.ivf_dial
            self._candidates = dial.candidates
            self._searched = indexes.refined(derived.index, derived.unit_index, dial.nprobe)
            self._index_facts.update(nlist=derived.index.nlist, nprobe=dial.nprobe, candidates=dial.candidates,
                                     tuned_recall=dial.recall)

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
        return {"model": self.model.path.name, "digest": self.model.digest, "vocab_size": self.vocab_size,
                "dim": self.dim, "objective": self.model.objective, "index": self._index_facts,
                "context_probs": self.has_context,
                "precomputed": {"similar": self.derived.similar is not None,
                                "context": self.derived.context is not None}}

    # ----------------------------------------------------------------------------- queries

    def row(self, word: str) -> int:
        row = self._words.row(word)
        if row is None:
            raise UnknownWord(word)
        return row

    def vector(self, word: str) -> list[float]:
        return self._vectors[self.row(word)].tolist()

    def vectors(self, words: Sequence[str]) -> tuple[dict[str, list[float]], list[str]]:
        """({word: vector} for the known words, the unknown words in request order, once each)."""
        rows = {w: self._words.row(w) for w in dict.fromkeys(words)}
        found = {w: r for w, r in rows.items() if r is not None}
        missing = [w for w, r in rows.items() if r is None]
        return dict(zip(found, self._vectors[list(found.values())].tolist())), missing

    def words(self, prefix: str, limit: int) -> list[str]:
        """At most `limit` vocabulary words that start with `prefix`, most frequent first (the empty prefix:
        the most frequent words)."""
        return self._words.words(self._words.with_prefix(prefix, limit))

    def similar(self, word: str, k: int) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to `word`, best first, `word` excluded."""
        return self._name(self._similar_rows(self.row(word), k))

    def map_2d(self, word: str, k: int) -> tuple[tuple[float, float], list[tuple[str, float, float, float]],
                                                 list[float]]:
        """`word` and its neighbours of similar() in the plane of the first two principal axes of their unit
        vectors: ((x, y) of `word`, [(neighbour, cosine, x, y)] best first, share of the variance on each axis)."""
        row = self.row(word)
        pairs = self._similar_rows(row, k)
        coords, share = arrays.pca_2d(self._unit[[row] + [i for i, _ in pairs]])  # (k + 1, 2), (2,)
        placed = [(w, s, x, y) for (w, s), (x, y) in zip(self._name(pairs), coords[1:].tolist())]
        return tuple(coords[0].tolist()), placed, share.tolist()

    def analogy(self, positive: Sequence[str], negative: Sequence[str], k: int) -> list[tuple[str, float]]:
        """Neighbours of the normalised mean of the unit vectors of `positive` (weight +1) and `negative`
        (weight -1), input words excluded: the rule of gensim's KeyedVectors.most_similar."""
        rows = [self.row(w) for w in (*positive, *negative)]
        if not rows:
            raise BadQuery("give at least one positive or negative word")
        weights = np.array([1.0] * len(positive) + [-1.0] * len(negative), dtype=np.float32)
        mean = (weights[:, None] * self._unit[rows]).mean(axis=0)
        return self._name(self._search(self._normalised(mean, "the positive and negative words cancel out"),
                                       k, exclude=set(rows)))

    def similar_to_vector(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to any vector of the model's dimension."""
        vec = np.asarray(vector, dtype=np.float64)
        if vec.shape != (self.dim,) or not np.isfinite(vec).all():
            raise BadQuery(f"vector must be {self.dim} finite numbers")
        scale = np.abs(vec).max()
        if scale > 0:
            vec = vec / scale  # large finite values would overflow the norm
        return self._name(self._search(self._normalised(vec, "vector has zero length: cosine is undefined"), k))

    def context_probs(self, word: str, k: int) -> list[tuple[str, float]]:
        """The k most probable context words w of centre word `word` (= c) under the model's softmax
        p(w | c) = exp(u_w . v_c) / sum_x exp(u_x . v_c), over the whole vocabulary, most probable first."""
        if self._output is None:
            raise ContextUnavailable("this model has no output vectors (imported word2vec vectors), "
                                     "so it defines no context distribution")
        row = self.row(word)
        if self.derived.context is not None:
            ids, scores, lse = self.derived.context
            ids, scores, lse = ids[row, :k], scores[row, :k], lse[row]
        else:
            all_scores = (self._output @ self._vectors[row])[None, :]  # float32 (1, V)
            lse = arrays.log_sum_exp(all_scores)[0]
            ids, scores = (a[0] for a in arrays.top_k(all_scores, k))
        return self._named(ids, np.exp(scores.astype(np.float64) - lse))

    # ---------------------------------------------------------------------------- helpers

    def _named(self, ids: np.ndarray, values: np.ndarray) -> list[tuple[str, float]]:
        return list(zip(self._words.words(ids.tolist()), values.tolist()))

    def _name(self, pairs: list[tuple[int, float]]) -> list[tuple[str, float]]:
        """(row, value) pairs -> (word, value) pairs."""
        return list(zip(self._words.words([i for i, _ in pairs]), [s for _, s in pairs]))

    def _similar_rows(self, row: int, k: int) -> list[tuple[int, float]]:
        """(row, cosine) of the k nearest rows to `row`, best first: from the table, else searched."""
        if self.derived.similar is not None:
            ids, scores = self.derived.similar
            return list(zip(ids[row, :k].tolist(), scores[row, :k].tolist()))
        return self._search(np.array(self._unit[row]), k, exclude={row})

    @staticmethod
    def _normalised(vec: np.ndarray, problem: str) -> np.ndarray:
        norm = float(np.linalg.norm(vec))
        if not norm > 0:
            raise BadQuery(problem)
        return (vec / norm).astype(np.float32)

    def _search(self, query: np.ndarray, k: int, exclude: set[int] = frozenset()) -> list[tuple[int, float]]:
        """The k best (row, cosine) for one unit query (N,), `exclude` left out: from the approximate index (IVF:
        the model's tuned candidates re-ranked by exact cosine), else from an exact scan of the unit vectors."""
        wanted = min(k + len(exclude), self.vocab_size)
        if self.derived.plan.kind == "ivf":
            indexes.set_candidates(self._searched, self._candidates, wanted)
        scores, ids = self._searched.search(query[None], wanted)
        keep = (ids[0] >= 0) & (ids[0] < self.vocab_size)  # -1: fewer hits than asked
        return arrays.best_of(ids[0][keep], scores[0][keep], k, exclude)
