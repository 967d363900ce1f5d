"""Side-by-side import benchmark: `python -m trainer import` against gensim's load_word2vec_format.

python bench/import_vs_gensim.py [--rows 1000000 --dim 300 --repeats 3 --forms binary,text --tmp DIR]

Writes a synthetic vectors file of --rows x --dim (normal float32 values, words of 2 to 15 letters) in the
word2vec C tool's own layouts, binary and text ("%lf " numbers, a space before each newline), into a
temporary folder that is removed at the end. Each system then reads each file --repeats times, each run in a
fresh process: ours imports it into a model folder (parsing, checking and the atomic, fsynced, checksummed
save), gensim loads it into KeyedVectors. The time is that of the call alone (interpreter start and imports
excluded); peak RSS is the whole process's. Prints a markdown table: median and range over the runs.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 20_000  # rows generated at a time

# Each child prints its seconds and its peak RSS: VmHWM, which starts afresh at exec (ru_maxrss of a child
# would include the memory of the benchmark process it was forked from).
PEAK = "print(time.perf_counter() - started, open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
OURS = f"""
import sys, time
from trainer.word2vec_format import import_word2vec
started = time.perf_counter()
import_word2vec(sys.argv[1], sys.argv[2])
{PEAK}
"""
GENSIM = f"""
import sys, time
from gensim.models import KeyedVectors
started = time.perf_counter()
KeyedVectors.load_word2vec_format(sys.argv[1], binary=sys.argv[2] == "binary")
{PEAK}
"""


def write_vectors(path: Path, rows: int, dim: int, binary: bool, seed: int = 0) -> None:
    """The word2vec C tool's layout: "V N\\n", then "word " + N float32 + "\\n" (binary) or "word " + N
    times "%lf " + "\\n" (text). Words are distinct: random letters followed by the row number in base 26."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    fmt = "%f " * dim
    with open(path, "wb") as f:
        f.write(f"{rows} {dim}\n".encode())
        for start in range(0, rows, BLOCK):
            count = min(BLOCK, rows - start)
            vectors = rng.normal(scale=0.1, size=(count, dim)).astype(np.float32)
            lengths = rng.integers(2, 16, size=count)
            stems = letters[rng.integers(0, 26, size=(count, 15))].tobytes()
            words = [stems[15 * i:15 * i + n] + _base26(start + i) for i, n in enumerate(lengths.tolist())]
            if binary:
                data = vectors.tobytes()
                size = 4 * dim
                f.write(b"".join(b"%s %s\n" % (w, data[i * size:(i + 1) * size]) for i, w in enumerate(words)))
            else:
                f.write(b"".join(b"%s %s\n" % (w, (fmt % tuple(row)).encode())
                                 for w, row in zip(words, vectors.tolist())))


def _base26(number: int) -> bytes:
    digits = b""
    while True:
        number, digit = divmod(number, 26)
        digits = bytes([65 + digit]) + digits  # upper case: never equal to a stem's lower-case letters
        if not number:
            return digits


def timed(command: list[str]) -> tuple[float, float]:
    """Run a command that prints its own seconds and peak RSS in KiB; return (seconds, peak RSS in MiB)."""
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}")
    seconds, kib = done.stdout.split()[-2:]
    return float(seconds), int(kib) / 1024


def run(args, folder: Path) -> list[dict]:
    results = []
    for form in args.forms:
        source = folder / f"vectors.{'bin' if form == 'binary' else 'txt'}"
        started = time.perf_counter()
        write_vectors(source, args.rows, args.dim, form == "binary")
        print(f"wrote {source.name}: {source.stat().st_size / 2**20:,.0f} MiB in "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
        for repeat in range(args.repeats):
            shutil.rmtree(folder / "model", ignore_errors=True)
            for system, command in (("skipgram", [sys.executable, "-c", OURS, str(source), str(folder / "model")]),
                                    ("gensim", [sys.executable, "-c", GENSIM, str(source), form])):
                seconds, rss = timed(command)
                results.append({"system": system, "form": form, "seconds": seconds, "rss": rss})
                print(f"{system} {form} run {repeat + 1}: {seconds:.2f} s, {rss:,.0f} MiB", file=sys.stderr)
        source.unlink()
    return results


def print_table(results: list[dict], rows: int, dim: int) -> None:
    matrix = 4 * rows * dim / 2**20
    print(f"\n{rows:,} x {dim} (matrix {matrix:,.0f} MiB), median (min..max) over the runs:\n")
    print("| system | form | seconds | peak RSS MiB | RSS / matrix |")
    print("|---|---|---|---|---|")
    for form in dict.fromkeys(r["form"] for r in results):
        for system in ("skipgram", "gensim"):
            runs = [r for r in results if r["form"] == form and r["system"] == system]
            s, m = [r["seconds"] for r in runs], [r["rss"] for r in runs]
            name = "skipgram" if system == "skipgram" else f"gensim {_gensim_version()}"
            print(f"| {name} | {form} | {statistics.median(s):.2f} ({min(s):.2f}..{max(s):.2f}) | "
                  f"{statistics.median(m):,.0f} | {statistics.median(m) / matrix:.2f} |")
    for form in dict.fromkeys(r["form"] for r in results):
        ours, theirs = (statistics.median(r["seconds"] for r in results if r["form"] == form and r["system"] == s)
                        for s in ("skipgram", "gensim"))
        print(f"\n{form}: skipgram takes {ours / theirs:.2f} x gensim's time ({theirs / ours:.1f} x faster)")


def _gensim_version() -> str:
    from importlib.metadata import version
    return version("gensim")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="vectors in the synthetic file")
    parser.add_argument("--dim", type=int, default=300, help="values per vector")
    parser.add_argument("--repeats", type=int, default=3, help="runs per system and form")
    parser.add_argument("--forms", type=lambda s: s.split(","), default=["binary", "text"],
                        help="comma-separated: binary, text")
    parser.add_argument("--tmp", default=None, help="where the temporary folder goes (default: the system's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-bench-", dir=args.tmp) as folder:
        results = run(args, Path(folder))
    print_table(results, args.rows, args.dim)


if __name__ == "__main__":
    main()
