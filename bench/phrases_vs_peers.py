"""Phrase detection side by side: this project's `corpus phrases`, the original word2phrase (C) and gensim's
Phrases + FrozenPhrases with word2phrase's formula, on the same corpus, min count and threshold.

python bench/phrases_vs_peers.py --word2phrase .cache/bin/word2phrase --corpus PATH [--corpus PATH ...]
    [--min-count 5 --threshold 100 --repeats 3]

Each system runs as a separate command, `--repeats` times (numba's cache warmed first). "wall s" is the
whole command (interpreter start and imports included: about 1.4 s of numpy, numba and its start-up for
skipgram, 1.5 s of imports for gensim; nothing for word2phrase, which spends its time clearing a 2 GB hash
table and in its two passes). "work s" is the phrase work alone (reading, counting, scoring, joining, writing),
timed inside a second process: skipgram's second run there (its first loads numba's compiled kernels),
gensim's only run (word2phrase: its wall time). Peak RSS is the command's. Phrase sets: the distinct joined tokens each
output holds, and the tables of skipgram and gensim (word2phrase writes none).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_vs_gensim import timed  # noqa: E402 (a bench beside this one)


def joined_tokens(path: Path, delimiter: str = "_") -> tuple[set[str], list[list[str]]]:
    lines = [line.split() for line in path.read_text(errors="replace").split("\n")]
    return {w for line in lines for w in line if delimiter in w}, lines


# ------------------------------------------------------------------ the runners (inside their processes)

def word2phrase_scorer(worda_count, wordb_count, bigram_count, len_vocab, min_count, corpus_word_count):
    """word2phrase's formula (gensim's own original_scorer multiplies by len(vocab) instead)."""
    return (bigram_count - min_count) / worda_count / wordb_count * corpus_word_count


class _Lines:
    """A corpus as gensim users stream it: one sentence per line, read again on each iteration."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __iter__(self):
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                yield line.split()


def run_gensim(corpus: str, out: str, min_count: int, threshold: float) -> dict:
    from gensim.models.phrases import FrozenPhrases, Phrases
    started = time.perf_counter()
    frozen = FrozenPhrases(Phrases(_Lines(corpus), min_count=min_count, threshold=threshold,
                                   scoring=word2phrase_scorer))
    with open(out, "w") as f:
        for sentence in _Lines(corpus):
            f.write(" ".join(frozen[sentence]) + "\n")
    return {"work": time.perf_counter() - started, "table": sorted(frozen.phrasegrams)}


def run_ours(corpus: str, out: str, min_count: int, threshold: float) -> dict:
    """The work of `corpus phrases`, timed on its second run in this process (the first loads numba's
    compiled kernels, a cost of start-up that the wall time of the command includes)."""
    from trainer.artifact import atomic_file
    from trainer.phrase_table import PhraseConfig, table_path
    from trainer.phrases import EncodedText
    for _ in range(2):
        started = time.perf_counter()
        text = EncodedText(corpus)
        table, _ = text.learn(PhraseConfig(min_count=min_count, threshold=threshold))
        with atomic_file(table_path(out)) as f:
            f.write(table.to_text().encode())
        with atomic_file(out) as f:
            text.write(f, out)
    return {"work": time.perf_counter() - started}


# ------------------------------------------------------------------------------------ the comparison

def bench_corpus(corpus: Path, args, tmp: Path) -> list[dict]:
    flags = ["--min-count", str(args.min_count), "--threshold", str(args.threshold)]
    me = [sys.executable, str(Path(__file__).resolve())]
    rows = []
    for system in ("skipgram", "word2phrase", "gensim"):
        out = tmp / f"{system}.txt"
        runs = []
        for _ in range(args.repeats):
            if system == "skipgram":
                wall, rss, _ = timed([sys.executable, "-m", "trainer", "corpus", "phrases", str(corpus), str(out),
                                      "--quiet", *flags])
                work = json.loads(timed([*me, "--run", "ours", str(corpus), str(tmp / "w.txt"), *flags])[2])["work"]
            elif system == "word2phrase":  # run in the output's folder: it copies names into 60-byte buffers
                wall, rss, _ = timed([str(Path(args.word2phrase).resolve()), "-train", str(corpus.resolve()),
                                      "-output", out.name, "-min-count", str(args.min_count), "-threshold",
                                      str(args.threshold), "-debug", "0"], cwd=tmp)
                work = wall
            else:
                wall, rss, report = timed([*me, "--run", "gensim", str(corpus), str(out), *flags])
                work = json.loads(report)["work"]
                (tmp / "gensim.table").write_text("\n".join(json.loads(report)["table"]))
            runs.append({"wall": wall, "work": work, "rss": rss})
        used, lines = joined_tokens(out)
        row = {"corpus": corpus.name, "system": system, "used": used, "lines": lines,
               **{key: statistics.median(r[key] for r in runs) for key in ("wall", "work", "rss")},
               "spread": (min(r["wall"] for r in runs), max(r["wall"] for r in runs))}
        if system == "skipgram":
            from trainer.phrase_table import read_table, table_path
            table = read_table(table_path(out))
            row["table"] = {table.token(p) for p in table.phrases}
        elif system == "gensim":
            row["table"] = set(filter(None, (tmp / "gensim.table").read_text().split("\n")))
        rows.append(row)
    return rows


def jaccard(a: set, b: set) -> str:
    return f"{len(a & b):,} / {len(a | b):,} ({len(a & b) / max(1, len(a | b)):.1%})"


def print_tables(rows: list[dict], args) -> None:
    print(f"min count {args.min_count}, threshold {args.threshold}, {os.cpu_count()} cores, median of "
          f"{args.repeats} run(s) (wall: min..max)\n")
    print("| corpus | system | wall s | work s | peak RSS MiB | phrases in table | distinct phrases in output |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        table = f"{len(r['table']):,}" if "table" in r else "-"
        print(f"| {r['corpus']} | {r['system']} | {r['wall']:.2f} ({r['spread'][0]:.2f}..{r['spread'][1]:.2f}) | "
              f"{r['work']:.2f} | {r['rss']:.0f} | {table} | {len(r['used']):,} |")
    print("\n| corpus | skipgram vs | same output, token for token | phrases in output: common / union | "
          "tables: common / union | skipgram wall, work = x theirs |")
    print("|---|---|---|---|---|---|")
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        mine = {r["system"]: r for r in rows if r["corpus"] == corpus}
        ours = mine["skipgram"]
        for other in ("word2phrase", "gensim"):
            theirs = mine[other]
            tables = jaccard(ours["table"], theirs["table"]) if "table" in theirs else "-"
            print(f"| {corpus} | {other} | {'yes' if ours['lines'] == theirs['lines'] else 'no'} | "
                  f"{jaccard(ours['used'], theirs['used'])} | {tables} | "
                  f"{theirs['wall'] / ours['wall']:.1f}x, {theirs['work'] / ours['work']:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", action="append", type=Path, help="corpus file (plain text); repeatable")
    parser.add_argument("--word2phrase", help="the word2phrase binary (make bench-phrases builds it)")
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", nargs=3, metavar=("SYSTEM", "CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        system, corpus, out = args.run
        runner = run_ours if system == "ours" else run_gensim
        print(json.dumps(runner(corpus, out, args.min_count, args.threshold)))
        return
    if not args.corpus or not args.word2phrase:
        parser.error("--corpus and --word2phrase are required")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = tmp / "warm.txt"
        warm.write_text("a b c a b c\n" * 50)
        timed([sys.executable, "-m", "trainer", "corpus", "phrases", str(warm), str(tmp / "warm-out.txt"),
               "--quiet", "--min-count", "1"])  # compiles and caches the kernels
        for corpus in args.corpus:
            rows += bench_corpus(corpus, args, tmp)
    print_tables(rows, args)


if __name__ == "__main__":
    main()
