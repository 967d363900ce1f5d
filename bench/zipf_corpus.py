"""A synthetic corpus with a large vocabulary: N tokens drawn from a Zipf law over T word types, seeded.

python bench/zipf_corpus.py OUT [--tokens 20000000] [--types 2000000] [--exponent 1.05] [--seed 0]

Word types are distinct random lower-case strings, shorter for frequent ranks (2-4 letters among the
first hundred ranks, 5-12 in the tail, as in English text). Token t is rank r with probability
proportional to 1 / r**exponent; lines hold 1 to 200 tokens (uniformly), so that line ends are sentence
ends as in a real corpus. The same arguments give the same bytes. With the defaults, about 1.3M distinct
types occur, and about 245,000 of them at least 5 times: the large-vocabulary case of gensim users.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

BLOCK_TOKENS = 1 << 22  # tokens drawn and written at a time


def word_types(types: int, rng: np.random.Generator) -> np.ndarray:
    """(types,) distinct random byte strings, by rank: short for frequent ranks, longer in the tail."""
    ranks = np.arange(1, types + 1)
    low = np.where(ranks <= 100, 2, 5)
    high = np.where(ranks <= 100, 4, 12)
    lengths = rng.integers(low, high + 1)
    letters = rng.integers(ord("a"), ord("z") + 1, size=(types, 12), dtype=np.uint8)
    words = np.array([row[:n].tobytes() for row, n in zip(letters, lengths.tolist())], dtype=object)
    _, first = np.unique(words.astype("S12"), return_index=True)
    repeated = np.setdiff1d(np.arange(types), first)  # a collision keeps its first rank; later ones get a suffix
    for rank in repeated.tolist():
        words[rank] = words[rank] + b"q" + str(rank).encode()
    return words


def write_corpus(out: Path, tokens: int, types: int, exponent: float, seed: int) -> None:
    """Write the corpus to `out`, making its folder if need be (through a temporary sibling, renamed when
    complete)."""
    rng = np.random.default_rng(seed)
    words = word_types(types, rng)
    weights = 1.0 / np.arange(1, types + 1, dtype=np.float64) ** exponent
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.partial")
    with open(temporary, "wb") as file:
        for start in range(0, tokens, BLOCK_TOKENS):
            n = min(BLOCK_TOKENS, tokens - start)
            ranks = np.minimum(np.searchsorted(cumulative, rng.random(n), side="right"), types - 1)
            ends = np.cumsum(rng.integers(1, 201, size=n // 100 + 2))
            ends = ends[ends < n].tolist() + [n]
            drawn, begin, lines = words[ranks], 0, []
            for end in ends:
                lines.append(b" ".join(drawn[begin:end]))
                begin = end
            file.write(b"\n".join(lines) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the corpus file to write")
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--types", type=int, default=2_000_000, help="word types in the Zipf law")
    parser.add_argument("--exponent", type=float, default=1.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.tokens < 1 or args.types < 1:
        sys.exit("error: --tokens and --types must be at least 1")
    write_corpus(args.out, args.tokens, args.types, args.exponent, args.seed)
    print(f"wrote {args.out}: {args.tokens:,} tokens, {args.out.stat().st_size / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
