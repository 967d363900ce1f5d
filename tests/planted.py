"""A synthetic corpus with planted structure: groups of words that share their contexts."""
from __future__ import annotations

from pathlib import Path

import numpy as np

GROUPS = 6
MEMBERS = 5  # words per group that should end up near each other
CONTEXTS = 8  # context words per group


def member(group: int, index: int) -> str:
    return f"g{group}m{index}"


def write_planted_corpus(path: Path, sentences: int = 3000, length: int = 12, seed: int = 0) -> Path:
    """Each sentence belongs to one group: its words are that group's members and contexts, so members
    of a group co-occur with the same contexts and never with another group's. Returns path."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(sentences):
        g = int(rng.integers(GROUPS))
        words = [member(g, int(rng.integers(MEMBERS))) if rng.random() < 0.4
                 else f"g{g}c{int(rng.integers(CONTEXTS))}" for _ in range(length)]
        lines.append(" ".join(words))
    path.write_text("\n".join(lines) + "\n")
    return path


def group_precision(words, vectors, k: int = MEMBERS - 1) -> float:
    """Fraction of each member's k nearest members (cosine, among all members) from its own group."""
    index = {w: i for i, w in enumerate(words)}
    names = [member(g, m) for g in range(GROUPS) for m in range(MEMBERS)]
    x = np.asarray(vectors, dtype=np.float64)[[index[n] for n in names]]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :k]
    groups = np.arange(len(names)) // MEMBERS
    return float((groups[nearest] == groups[:, None]).mean())


def write_planted_single_line(path: Path, n_tokens: int, segment: int = 50, seed: int = 0) -> Path:
    """The same structure as a text8-style file: n_tokens words on one line with no newline at all, in
    stretches of `segment` words of one group each. Written in pieces, never held as one string."""
    rng = np.random.default_rng(seed)
    table = np.array([[member(g, m) for m in range(MEMBERS)] + [f"g{g}c{c}" for c in range(CONTEXTS)]
                      for g in range(GROUPS)])
    piece = 1_000_000
    with open(path, "w") as out:
        for lo in range(0, n_tokens, piece):
            n = min(piece, n_tokens - lo)
            groups = np.repeat(rng.integers(GROUPS, size=n // segment + 1), segment)[:n]
            slots = np.where(rng.random(n) < 0.4, rng.integers(MEMBERS, size=n),
                             MEMBERS + rng.integers(CONTEXTS, size=n))
            out.write((" " if lo else "") + " ".join(table[groups, slots].tolist()))
    return path
