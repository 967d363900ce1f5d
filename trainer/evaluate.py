"""Intrinsic evaluation of a model: analogy accuracy (3CosAdd) and word-pair similarity (Spearman), from files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainer import artifact

ANALOGY_TOPN = 5  # a prediction counts only among the 5 best candidates, as in gensim and word2vec's compute-accuracy
BATCH = 256  # questions scored per matrix product: (BATCH, restrict_vocab) float32 scores at a time


class EvaluationError(Exception):
    """An evaluation file that cannot be read or holds nothing usable; the message names the file."""


# ------------------------------------------------------------------------------------------- analogies

def evaluate_analogies(model: artifact.Model, path, restrict_vocab: int = 30000,
                       case_insensitive: bool = True) -> dict:
    """3CosAdd accuracy on 'a b c d' questions grouped under ': section' lines, with gensim's rules.

    Only the first `restrict_vocab` rows (most frequent first) are known, answered or searched; a question with
    a word outside them is skipped. With case_insensitive, words compare upper-cased and a form's first
    (most frequent) row stands for it. Accuracies are fractions in [0, 1] (0.0 for a section with no
    answered question). Returns {file, restrict_vocab, case_insensitive, sections: [{section, correct, total,
    skipped, accuracy}], correct, total, skipped, accuracy, questions, invalid_lines}.
    """
    sections, invalid = _read_analogies(path, case_insensitive)
    lookup, group = _restricted_vocab(model.words, restrict_vocab, case_insensitive)
    unit = _unit_rows(model.input_vectors[:len(group)])
    results = []
    for name, questions in sections:
        known = [q for q in questions if all(word in lookup for word in q)]
        rows = np.array([[lookup[word] for word in q] for q in known], dtype=np.int64).reshape(-1, 4)
        correct = int(_solve(unit, group, rows).sum())
        results.append({"section": name, "correct": correct, "total": len(known),
                        "skipped": len(questions) - len(known), "accuracy": _ratio(correct, len(known))})
    correct, total = sum(s["correct"] for s in results), sum(s["total"] for s in results)
    return {"file": str(path), "restrict_vocab": restrict_vocab, "case_insensitive": case_insensitive,
            "sections": results, "correct": correct, "total": total,
            "skipped": sum(s["skipped"] for s in results), "accuracy": _ratio(correct, total),
            "questions": sum(len(q) for _, q in sections), "invalid_lines": invalid}


def _solve(unit: np.ndarray, group: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(R, N) unit rows, (R,) group row of each row, (Q, 4) rows of a b c d -> (Q,) bool: answered d."""
    hits = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), BATCH):
        q = rows[start:start + BATCH]  # (B, 4)
        query = unit[q[:, 1]] + unit[q[:, 2]] - unit[q[:, 0]]  # (B, N); its length does not change the ranking
        scores = query @ unit.T  # (B, R)
        scores[np.arange(len(q))[:, None], q[:, :3]] = -np.inf  # a question's own rows are never answers
        hits[start:start + len(q)] = _predicted_group(scores, group, group[q[:, :3]]) == group[q[:, 3]]
    return hits


def _predicted_group(scores: np.ndarray, group: np.ndarray, asked: np.ndarray) -> np.ndarray:
    """(B, R) scores, (B, 3) group rows of a b c -> (B,) group row of the answer, -1 for none.

    gensim's rule: among the 5 best rows, the first whose word is no form of a, b or c. The best row is that
    answer unless it is such a form (another case of a question word), so only those rows are ranked further."""
    best = scores.argmax(axis=1)  # (B,)
    predicted = group[best]
    clash = (predicted[:, None] == asked).any(axis=1) | ~np.isfinite(scores[np.arange(len(best)), best])
    if clash.any():
        predicted[clash] = _first_allowed(scores[clash], group, asked[clash])
    return predicted


def _first_allowed(scores: np.ndarray, group: np.ndarray, asked: np.ndarray) -> np.ndarray:
    """The top-5 rule in full: the first allowed of the 5 best rows, else the 5th (wrong unless d repeats a
    question word), -1 when the vocabulary offers no row at all."""
    topn = min(ANALOGY_TOPN, scores.shape[1])
    top = np.argpartition(-scores, topn - 1, axis=1)[:, :topn]  # (B, topn), unordered
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
    present = np.isfinite(np.take_along_axis(scores, top, 1))  # False for masked rows of a tiny vocabulary
    candidates = group[top]  # (B, topn)
    allowed = present & (candidates[:, :, None] != asked[:, None, :]).all(axis=2)
    pick = np.where(allowed.any(axis=1), allowed.argmax(axis=1), present.sum(axis=1) - 1)
    predicted = candidates[np.arange(len(top)), np.maximum(pick, 0)]
    return np.where(pick >= 0, predicted, -1)


def _read_analogies(path, case_insensitive: bool) -> tuple[list[tuple[str, list[tuple[str, ...]]]], int]:
    """-> [(section name, [(a, b, c, d), ...]), ...] and the number of lines that are not 4 words."""
    sections, invalid = [], 0
    for number, line in enumerate(_lines(path), 1):
        if line.startswith(": "):
            sections.append((line.lstrip(": ").strip(), []))
            continue
        fields = line.upper().split() if case_insensitive else line.split()
        if not fields:
            continue
        if not sections:
            raise EvaluationError(f"{path}: line {number}: a question before the first ': section' line")
        if len(fields) != 4:
            invalid += 1
            continue
        sections[-1][1].append(tuple(fields))
    if not any(questions for _, questions in sections):
        raise EvaluationError(f"{path}: no analogy questions (expected ': section' lines, then 'a b c d' lines)")
    return sections, invalid


# ------------------------------------------------------------------------------------------ word pairs

def evaluate_word_pairs(model: artifact.Model, path, delimiter: str | None = None, case_insensitive: bool = True,
                        restrict_vocab: int = 300000) -> dict:
    """Spearman and Pearson correlation between cosine similarity and human scores, with gensim's rules.

    The file holds 'word1 word2 score' lines split by `delimiter` (None: a tab, gensim's default); lines starting
    with '#' are comments and other malformed lines are counted and ignored. Pairs with a word outside the
    first `restrict_vocab` rows are skipped; oov_ratio is their percentage. A correlation that is undefined
    (fewer than 2 pairs, or constant scores) is None. Returns {file, pairs, skipped, oov_ratio, spearman,
    pearson, restrict_vocab, case_insensitive, invalid_lines}.
    """
    pairs, invalid = _read_pairs(path, "\t" if delimiter is None else delimiter, case_insensitive)
    lookup, _ = _restricted_vocab(model.words, restrict_vocab, case_insensitive)
    known = [(lookup[a], lookup[b], score) for a, b, score in pairs if a in lookup and b in lookup]
    rows = np.array([(a, b) for a, b, _ in known], dtype=np.int64).reshape(-1, 2)
    unit = _unit_rows(model.input_vectors[rows.ravel()]).reshape(len(rows), 2, model.dim)  # (P, 2, N)
    similarity = np.einsum("pn,pn->p", unit[:, 0], unit[:, 1])  # (P,) cosines
    gold = np.array([score for _, _, score in known], dtype=np.float64)
    return {"file": str(path), "pairs": len(known), "skipped": len(pairs) - len(known),
            "oov_ratio": 100.0 * (len(pairs) - len(known)) / len(pairs),
            "spearman": spearman(gold, similarity), "pearson": pearson(gold, similarity),
            "restrict_vocab": restrict_vocab, "case_insensitive": case_insensitive, "invalid_lines": invalid}


def _read_pairs(path, delimiter: str, case_insensitive: bool) -> tuple[list[tuple[str, str, float]], int]:
    """-> [(word1, word2, score), ...] and the number of malformed lines ('#' comments are not counted)."""
    pairs, invalid = [], 0
    for line in _lines(path):
        if not line or line.startswith("#"):
            continue
        fields = line.split(delimiter)
        fields = [field.upper() for field in fields] if case_insensitive else fields
        score = _number(fields[2]) if len(fields) == 3 else None
        if score is None:
            invalid += 1
            continue
        pairs.append((fields[0], fields[1], score))
    if not pairs:
        raise EvaluationError(f"{path}: no word pairs (expected 'word1{delimiter!r}word2{delimiter!r}score' lines)")
    return pairs, invalid


def average_ranks(values) -> np.ndarray:
    """(n,) values -> (n,) float64 ranks from 1, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return np.zeros(0)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new_run = np.r_[True, ordered[1:] != ordered[:-1]]  # (n,) True where a run of tied values starts
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(new_run) - 1]  # positions s..e-1 -> mean rank
    return ranks


def pearson(x, y) -> float | None:
    """Pearson correlation of two (n,) sequences; None when undefined (n < 2 or either is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(np.clip((x @ y) / denominator, -1.0, 1.0)) if denominator > 0 else None


def spearman(x, y) -> float | None:
    """Spearman rank correlation of two (n,) sequences: Pearson of their average ranks (ties shared)."""
    return pearson(average_ranks(x), average_ranks(y))


# --------------------------------------------------------------------------------------------- helpers

def _restricted_vocab(words, restrict_vocab: int, case_insensitive: bool) -> tuple[dict[str, int], np.ndarray]:
    """-> key -> row of its first occurrence among the first `restrict_vocab` words, and the (R,) int64
    first-occurrence row of each of those rows (its case-folded group)."""
    keys = [word.upper() for word in words[:restrict_vocab]] if case_insensitive else words[:restrict_vocab]
    lookup: dict[str, int] = {}
    for row, key in enumerate(keys):
        lookup.setdefault(key, row)
    return lookup, np.fromiter((lookup[key] for key in keys), dtype=np.int64, count=len(keys))


def _unit_rows(vectors) -> np.ndarray:
    """(R, N) vectors -> (R, N) float32 rows of unit length; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1).astype(np.float32)


def _lines(path):
    """The file's lines without line ends, read as UTF-8; EvaluationError when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def _number(text: str) -> float | None:
    """A finite float, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


# -------------------------------------------------------------------------------------------- reports

def evaluate_model(model: artifact.Model, analogies=None, similarity=(), restrict_vocab: int = 30000,
                   case_insensitive: bool = True) -> dict:
    """Every evaluation asked of one model: {model, vocab_size, dim, analogies: evaluate_analogies of the
    `analogies` file (or None), similarity: [evaluate_word_pairs of each `similarity` file]}.

    `restrict_vocab` applies to the analogies; word pairs keep evaluate_word_pairs' own, as gensim does."""
    return {"model": str(model.path), "vocab_size": model.vocab_size, "dim": model.dim,
            "analogies": evaluate_analogies(model, analogies, restrict_vocab, case_insensitive) if analogies else None,
            "similarity": [evaluate_word_pairs(model, f, case_insensitive=case_insensitive) for f in similarity]}


def format_report(results: dict) -> str:
    """The results of evaluate_model as a plain-text table."""
    lines = [f"model {results['model']}: {results['vocab_size']} words x {results['dim']} dimensions"]
    analogies = results["analogies"]
    if analogies:
        lines += ["", f"analogies {analogies['file']} (first {analogies['restrict_vocab']} words, 3CosAdd)",
                  f"  {'section':<32} {'accuracy':>8} {'correct/total':>15} {'skipped':>8}"]
        for s in analogies["sections"] + [dict(analogies, section="overall")]:
            counts = f"{s['correct']}/{s['total']}"
            lines.append(f"  {s['section']:<32} {100 * s['accuracy']:>7.1f}% {counts:>15} {s['skipped']:>8}")
        lines.append(f"  skipped {analogies['skipped']} of {analogies['questions']} questions "
                     f"({_ratio(100 * analogies['skipped'], analogies['questions']):.1f}%): a word missing from "
                     f"the first {analogies['restrict_vocab']} of the vocabulary")
    if results["similarity"]:
        lines += ["", f"  {'word pairs':<32} {'pairs':>6} {'Spearman':>9} {'Pearson':>9} {'OOV':>7}"]
        for s in results["similarity"]:
            rho, r = ("n/a" if v is None else f"{v:.4f}" for v in (s["spearman"], s["pearson"]))
            lines.append(f"  {Path(s['file']).name:<32} {s['pairs']:>6} {rho:>9} {r:>9} {s['oov_ratio']:>6.1f}%")
    return "\n".join(lines)


def write_results(results: dict, out) -> Path:
    """Write `results` to `out` as indented JSON, through a temporary sibling and a rename; OSError when it
    cannot be written."""
    out = Path(out)
    with artifact.atomic_file(out) as f:
        f.write((json.dumps(results, indent=2) + "\n").encode("utf-8"))
    return out
