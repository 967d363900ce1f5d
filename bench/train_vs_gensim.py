"""Side-by-side training benchmark: this project's trainer against gensim on the same corpus.

python bench/train_vs_gensim.py (--corpus PATH | --zipf TOKENS) [--epochs 5 --workers 2 --repeats 3 --data ../shared/data]

Each system runs as a separate command (numba's cache warmed first), `--repeats` times with different
seeds. Both models are evaluated by the same code (trainer.evaluate) on the analogy questions (the 30,000
most frequent words, as gensim restricts) and on WordSim-353 and SimLex-999. Prints one row per run and a
summary (median, and min..max as the run-to-run spread). The first pass (reading and counting the corpus;
gensim's build_vocab) and the training are timed apart; peak RSS is the whole command's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer import artifact  # noqa: E402
from trainer.word2vec_format import import_word2vec  # noqa: E402
from trainer.evaluate import evaluate_analogies, evaluate_word_pairs  # noqa: E402


def timed(command: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Run a command (in `cwd`, default the project); return (wall seconds, peak RSS in MiB, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd or ROOT)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return seconds, usage.ru_maxrss / 1024, out


def run_ours(corpus: str, out: Path, args, seed: int) -> dict:
    command = [sys.executable, "-m", "trainer", "train", corpus, "--out", str(out), "--quiet",
               "--epochs", str(args.epochs), "--workers", str(args.workers), "--seed", str(seed), *args.ours]
    wall, rss, _ = timed(command)
    meta = artifact.load(out).meta
    words = meta["corpus"]["raw_tokens"] * args.epochs
    return {"wall": wall, "rss": rss, "first_pass": meta["corpus"]["read_seconds"],
            "train": meta["training"]["seconds"], "words_per_s": words / meta["training"]["seconds"]}


def run_gensim(corpus: str, out: Path, args, seed: int) -> dict:
    vectors = out.with_suffix(".bin")
    command = [sys.executable, str(ROOT / "bench" / "gensim_word2vec.py"), corpus, str(vectors),
               "--epochs", str(args.epochs), "--workers", str(args.workers), "--seed", str(seed)]
    wall, rss, stdout = timed(command)
    report = json.loads(stdout.strip().splitlines()[-1])
    import_word2vec(vectors, out)
    return {"wall": wall, "rss": rss, "first_pass": report["vocab_seconds"], "train": report["train_seconds"],
            "words_per_s": report["raw_words"] * args.epochs / report["train_seconds"]}


def run_word2vec_c(corpus: str, out: Path, args, seed: int) -> dict:
    """The original word2vec C tool (it has no seed option: every run starts from the same state).
    Its words/s is over the whole command's wall time, vocabulary pass included (a fraction of a second
    here), as it reports no training time of its own."""
    vectors = out.with_suffix(".bin")
    command = [args.word2vec_c, "-train", corpus, "-output", str(vectors), "-cbow", "0", "-size", "100",
               "-window", "5", "-negative", "5", "-hs", "0", "-sample", "1e-3", "-min-count", "5",
               "-alpha", "0.025", "-threads", str(args.workers), "-iter", str(args.epochs), "-binary", "1"]
    wall, rss, _ = timed(command)
    import_word2vec(vectors, out)
    with open(corpus, "rb") as f:
        raw_words = sum(len(line.split()) for line in f)
    return {"wall": wall, "rss": rss, "first_pass": None, "train": None,
            "words_per_s": raw_words * args.epochs / wall}


def quality(model_dir: Path, data: Path) -> dict:
    model = artifact.load(model_dir)
    return {"analogy": 100 * evaluate_analogies(model, data / "questions-words.txt", 30000)["accuracy"],
            "ws353": evaluate_word_pairs(model, data / "wordsim353.tsv")["spearman"],
            "simlex": evaluate_word_pairs(model, data / "simlex999.txt")["spearman"]}


COLUMNS = [("wall", "wall s", "{:.2f}"), ("first_pass", "first pass s", "{:.2f}"), ("train", "training s", "{:.2f}"),
           ("words_per_s", "words/s", "{:,.0f}"), ("rss", "peak RSS MiB", "{:.0f}"),
           ("analogy", "analogy %", "{:.2f}"), ("ws353", "WS-353", "{:.3f}"), ("simlex", "SimLex", "{:.3f}")]


def cell(fmt: str, value) -> str:
    """A table cell: n/a for what was not measured (a word set the corpus does not cover, None; NaN)."""
    return "n/a" if value is None or value != value else fmt.format(value)


def print_table(rows: list[dict]) -> None:
    header = ["system", "seed"] + [title for _, title, _ in COLUMNS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [row["system"], str(row["seed"])] + [cell(fmt, row[key]) for key, _, fmt in COLUMNS]
        print("| " + " | ".join(cells) + " |", flush=True)


def print_summary(rows: list[dict]) -> None:
    print("\nmedian (min..max over runs):")
    print("| system | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for system in dict.fromkeys(r["system"] for r in rows):
        runs = [r for r in rows if r["system"] == system]
        cells = []
        for key, _, fmt in COLUMNS:
            values = [r[key] for r in runs if r[key] is not None and r[key] == r[key]]  # (None, NaN: not measured)
            cells.append(f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"
                         if values else "n/a")
        print(f"| {system} | " + " | ".join(cells) + " |")
    ours = statistics.median(r["words_per_s"] for r in rows if r["system"] == "skipgram")
    print()
    for system in dict.fromkeys(r["system"] for r in rows if r["system"] != "skipgram"):
        theirs = statistics.median(r["words_per_s"] for r in rows if r["system"] == system)
        print(f"skipgram words/s = {ours / theirs:.2f} x {system}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="corpus file (text, text8-style, .gz/.bz2)")
    source.add_argument("--zipf", type=int, metavar="TOKENS", help="a generated Zipf corpus of this many tokens "
                        "(bench/zipf_corpus.py's defaults: 2M types, exponent 1.05, seed 0), kept in .cache/zipf")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder with questions-words.txt, wordsim353.tsv, simlex999.txt")
    parser.add_argument("--word2vec-c", metavar="BINARY",
                        help="also run the original word2vec C tool, built from this path (make bench-train builds it)")
    parser.add_argument("--ours", nargs=argparse.REMAINDER, default=[],
                        help="extra options for this project's trainer (everything after --ours)")
    args = parser.parse_args()
    if args.zipf:
        from zipf_corpus import write_corpus
        generated = ROOT / ".cache" / "zipf" / f"zipf-{args.zipf}.txt"
        if not generated.exists():
            generated.parent.mkdir(parents=True, exist_ok=True)
            write_corpus(generated, args.zipf, 2_000_000, 1.05, 0)
        args.corpus = str(generated)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = tmp / "warm.txt"
        warm.write_text("a b c d e f g\n" * 50)
        timed([sys.executable, "-m", "trainer", "train", str(warm), "--out", str(tmp / "warm"), "--quiet",
               "--min-count", "1", "--epochs", "1"])  # compiles and caches the kernels
        for repeat in range(args.repeats):
            systems = [("skipgram", run_ours), ("gensim", run_gensim)]
            if args.word2vec_c:
                systems.append(("word2vec C", run_word2vec_c))
            for system, run in systems:
                out = tmp / f"{system}-{repeat}"
                row = {"system": system, "seed": repeat + 1, **run(args.corpus, out, args, repeat + 1)}
                rows.append({**row, **quality(out, args.data)})
    print(f"corpus {args.corpus}, {args.epochs} epochs, {args.workers} workers, "
          f"{os.cpu_count()} cores\n")
    print_table(rows)
    print_summary(rows)


if __name__ == "__main__":
    main()
