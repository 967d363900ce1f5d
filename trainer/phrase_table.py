"""What a phrase is, without numba: the settings and scores of phrase detection, and the phrase table file
(CORPUS.phrases.tsv).

One line per phrase: ``phrase<TAB>score<TAB>count<TAB>pass<TAB>left<TAB>right``, by pass, then by score
(highest first). ``phrase`` is ``left + delimiter + right``; pass k joins pairs of tokens of the text as
pass k - 1 left it, so a pass-2 phrase such as ``new_york_city`` records which halves it joined
(``new_york`` + ``city``). Lines of only the first three columns are read as pass-1 phrases split at
the delimiter.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUFFIX = ".phrases.tsv"
SCORINGS = ("word2phrase", "npmi")
DEFAULT_MAX_PAIRS = 20_000_000  # a table of 2**25 slots (512 MiB) at most


class PhraseConfigError(ValueError):
    """A setting of phrase detection that cannot be used, named by its command-line flag."""


@dataclass(frozen=True)
class PhraseConfig:
    """Settings of phrase detection (word2phrase's flags, and gensim's npmi as an alternative score)."""

    min_count: int = 5  # words and pairs counted fewer times are never joined
    threshold: float = 100.0  # a pair is joined when its score is above this (strictly)
    passes: int = 1  # pass k counts over the output of pass k - 1
    later_threshold: float | None = None  # threshold of passes 2, 3, ...: None = half of threshold
    # for word2phrase scoring (the word2vec distribution's demo-phrase-accuracy.sh runs 200, then 100),
    # the same threshold for npmi
    delimiter: str = "_"  # joins the two halves of a phrase
    scoring: str = "word2phrase"  # or "npmi": normalised pointwise mutual information, in [-1, 1]
    max_pairs: int = DEFAULT_MAX_PAIRS  # beyond this many distinct pairs, rare pairs and words are forgotten

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise PhraseConfigError(f"--scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        for flag, value in (("--min-count", self.min_count), ("--passes", self.passes),
                            ("--max-pairs", self.max_pairs)):
            if value < 1:
                raise PhraseConfigError(f"{flag} must be at least 1, got {value}")
        if self.max_pairs >= 1 << 40:
            raise PhraseConfigError(f"--max-pairs must be below 2**40, got {self.max_pairs}")
        for flag, value in (("--threshold", self.threshold), ("--later-threshold", self.later_threshold)):
            if value is None:
                continue
            if not math.isfinite(value):
                raise PhraseConfigError(f"{flag} must be a finite number, got {value}")
            if self.scoring == "word2phrase" and value < 0:
                raise PhraseConfigError(f"{flag} must be at least 0 for word2phrase scoring, got {value}")
            if self.scoring == "npmi" and not -1 <= value <= 1:
                raise PhraseConfigError(f"{flag} must be between -1 and 1 for npmi scoring, got {value}")
        if not self.delimiter or len(self.delimiter.split()) != 1 or self.delimiter.strip() != self.delimiter:
            raise PhraseConfigError(f"--delimiter must be non-empty and hold no whitespace, got {self.delimiter!r}")

    def threshold_of(self, pass_number: int) -> float:
        if pass_number == 1:
            return self.threshold
        if self.later_threshold is not None:
            return self.later_threshold
        return self.threshold / 2 if self.scoring == "word2phrase" else self.threshold


def config_from_strings(**texts: str | None) -> PhraseConfig:
    """A PhraseConfig from command-line strings (None keeps the default); PhraseConfigError names the flag."""
    kinds = {"min_count": int, "passes": int, "max_pairs": int, "threshold": float, "later_threshold": float}
    values: dict = {}
    for name, text in texts.items():
        if text is None:
            continue
        kind = kinds.get(name, str)
        try:
            values[name] = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise PhraseConfigError(f"--{name.replace('_', '-')} must be {noun}, got {text!r}") from None
    return PhraseConfig(**values)


def score_pairs(scoring: str, pair_counts: np.ndarray, left_counts: np.ndarray, right_counts: np.ndarray,
                total: int, min_count: int) -> np.ndarray:
    """Scores (P,) of pairs from int64 (P,) counts. word2phrase: (n_ab - min_count) / n_a / n_b * total in
    float32, operation by operation as word2phrase.c computes it; npmi: ln(p_ab / (p_a p_b)) / -ln(p_ab)
    in float64, as gensim's npmi_scorer (p = n / total)."""
    if scoring == "word2phrase":
        f32 = np.float32
        return (pair_counts - min_count).astype(f32) / left_counts.astype(f32) / right_counts.astype(f32) * f32(total)
    p_ab, p_a, p_b = (np.asarray(c, dtype=np.float64) / total for c in (pair_counts, left_counts, right_counts))
    with np.errstate(divide="ignore", invalid="ignore"):
        npmi = np.log(p_ab / (p_a * p_b)) / -np.log(p_ab)
    return np.where(p_ab == 1.0, np.inf, npmi)


def passes_threshold(scoring: str, scores: np.ndarray, threshold: float) -> np.ndarray:
    """score > threshold, compared in float32 for word2phrase (its `real` type) and float64 for npmi."""
    return scores > (np.float32(threshold) if scoring == "word2phrase" else threshold)



class PhraseTableError(ValueError):
    """A phrase table that cannot be read, with the line that is wrong."""


@dataclass(frozen=True)
class Phrase:
    left: str
    right: str
    score: float
    count: int  # occurrences of the pair counted in its pass (pairs across line ends included)
    pass_number: int  # 1: found in the text itself; k: in the output of pass k - 1


@dataclass(frozen=True, eq=False)
class PhraseTable:
    """Phrases of one or more passes, joined by ``delimiter``."""

    delimiter: str
    phrases: tuple[Phrase, ...]

    def __post_init__(self) -> None:
        order = sorted(self.phrases, key=lambda p: (p.pass_number, -p.score, p.left, p.right))
        object.__setattr__(self, "phrases", tuple(order))

    @property
    def passes(self) -> int:
        return max((p.pass_number for p in self.phrases), default=0)

    def token(self, phrase: Phrase) -> str:
        return phrase.left + self.delimiter + phrase.right

    def pairs(self, pass_number: int) -> list[tuple[str, str]]:
        """The (left, right) pairs that pass joins."""
        return [(p.left, p.right) for p in self.phrases if p.pass_number == pass_number]

    def to_text(self) -> str:
        return "".join(f"{self.token(p)}\t{p.score:.9g}\t{p.count}\t{p.pass_number}\t{p.left}\t{p.right}\n"
                       for p in self.phrases)


def table_path(corpus: str | os.PathLike[str]) -> Path:
    """Where the table of a phrased corpus lies: beside it, named CORPUS.phrases.tsv."""
    return Path(os.fspath(corpus) + SUFFIX)


def read_table(path: str | os.PathLike[str], delimiter: str = "_") -> PhraseTable:
    """Read a table; ``delimiter`` splits three-column lines (six-column lines carry their own).
    Raises PhraseTableError naming the line, or OSError."""
    path = Path(path)
    phrases: list[Phrase] = []
    seen: set[tuple[int, str, str]] = set()
    found_delimiter: str | None = None
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PhraseTableError(f"{path}: line {number} is not UTF-8 text") from None
            if not line.strip() or line.startswith("#"):
                continue
            try:
                phrase, used = _parse(line.rstrip("\r\n").split("\t"), delimiter)
            except ValueError as error:
                raise PhraseTableError(f"{path}: line {number}: {error}") from None
            if found_delimiter not in (None, used):
                raise PhraseTableError(f"{path}: line {number}: delimiter {used!r}, but earlier lines use "
                                       f"{found_delimiter!r}")
            found_delimiter = used
            if (phrase.pass_number, phrase.left, phrase.right) in seen:
                raise PhraseTableError(f"{path}: line {number}: {phrase.left!r} + {phrase.right!r} is listed twice")
            seen.add((phrase.pass_number, phrase.left, phrase.right))
            phrases.append(phrase)
    return PhraseTable(found_delimiter or delimiter, tuple(phrases))


def _parse(fields: list[str], delimiter: str) -> tuple[Phrase, str]:
    if len(fields) == 3:
        parts = fields[0].split(delimiter)
        if len(parts) != 2:
            raise ValueError(f"{fields[0]!r} does not split into two words at {delimiter!r} "
                             f"(a three-column line is a pass-1 phrase 'a{delimiter}b')")
        fields = [*fields, "1", *parts]
    if len(fields) != 6:
        raise ValueError(f"expected phrase, score, count, pass, left, right separated by tabs, "
                         f"found {len(fields)} fields")
    token, score, count, pass_number, left, right = fields
    middle = len(token) - len(left) - len(right)
    if not (token.startswith(left) and token.endswith(right) and middle > 0):
        raise ValueError(f"phrase {token!r} is not {left!r} + a delimiter + {right!r}")
    if any(not word or len(word.split()) != 1 or word.strip() != word for word in (left, right)):
        raise ValueError(f"{left!r} and {right!r} must be single words without whitespace")
    phrase = Phrase(left, right, float(score), int(count), int(pass_number))
    if math.isnan(phrase.score) or phrase.count < 1 or phrase.pass_number < 1:
        raise ValueError(f"score {score!r} must be a number, count {count!r} and pass {pass_number!r} "
                         "at least 1")
    return phrase, token[len(left):len(left) + middle]


def describe(corpus: str | os.PathLike[str]) -> dict | None:
    """What meta.json records of the table beside a corpus (None when there is none): its path, size,
    SHA-256, phrases per pass and delimiter, or the reason it could not be read."""
    path = table_path(corpus)
    if not path.is_file():
        return None
    record: dict = {"table": str(path)}
    try:
        data = path.read_bytes()
        record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        table = read_table(path)
    except (OSError, PhraseTableError) as error:
        return {**record, "error": str(error)}
    per_pass = [len(table.pairs(k)) for k in range(1, table.passes + 1)]
    return {**record, "phrases": len(table.phrases), "phrases_per_pass": per_pass, "delimiter": table.delimiter}
