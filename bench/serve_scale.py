"""The service at the sizes people serve: a million words and more, as a new user would meet it.

    python bench/serve_scale.py [--words 1000000] [--dim 300] [--kinds flat,ivf,hnsw] [--duration 5]

1. A synthetic model of clustered vectors (2,000 centres; as bench/serve_load.py's) is written as a word2vec
   binary file, then imported with `python -m trainer import` beside gensim's `load_word2vec_format` of the
   same file (seconds and peak RSS of each whole command).
2. For every index kind (INDEX=...), gunicorn with service/gunicorn.conf.py on loopback:
   - first start with an empty cache, until /readyz answers, and a restart with the cache warm;
   - total PSS of the master and its workers after a thousand GET /similar by word (over fresh
     connections, so every worker answers), with 2 and with 4 workers;
   - wrk (Debian package) on GET /similar by word and POST /similar of a random vector, at 1 and 8
     connections: req/s, p50, p99; for the exact scan, the GB/s its p50 implies;
   - recall@10 of /similar by word against brute force over a sample of words (the service's own code).
3. The peer, in the same run: bench/serve_load.py's 100,000 x 100 model under INDEX=hnsw (the throughput a
   million words must not fall below), served beside the big model: GET /similar by word at 8 connections
   alternates between the two, `--rounds` times each, so that both meet the same load on this shared
   machine; the table gives the medians and the median of the rounds' ratios.
Targets (the service-at-scale issue): total PSS <= 1.3 x input_vectors.npy; 2 -> 4 workers adds <= 10 % of
it; first start <= 90 s, warm start <= 5 s; approximate recall@10 >= 0.95 and p99 < 5 ms at 1 connection.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import numpy as np
import requests

from serve_load import ROOT, Server, run_in_temporary_folder, synthetic_model, wrk
from serve_soak import memory, worker_pids

MIB = 1 << 20


def write_word2vec_bin(path: Path, size: int, dim: int, seed: int = 0) -> Path:
    """Clustered random vectors w0..w{size-1} in the word2vec C binary format, written a block at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    with open(path, "wb") as f:
        f.write(f"{size} {dim}\n".encode())
        for start in range(0, size, 20_000):
            rows = min(20_000, size - start)
            block = centres[rng.integers(0, len(centres), rows)] + rng.standard_normal((rows, dim), np.float32)
            block *= 2 / np.sqrt(dim)
            f.write(b"".join(b"w%d " % (start + i) + block[i].astype("<f4").tobytes() + b"\n" for i in range(rows)))
    return path


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of a whole command; exits on failure."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def import_both(source: Path, model_dir: Path) -> list[tuple[str, float, float]]:
    ours = timed([sys.executable, "-m", "trainer", "import", str(source), str(model_dir)])
    gensim = timed([sys.executable, "-c", "import sys; from gensim.models import KeyedVectors; "
                    "KeyedVectors.load_word2vec_format(sys.argv[1], binary=True)", str(source)])
    return [("skipgram import", *ours), ("gensim load_word2vec_format", *gensim)]


def total_pss(server: Server) -> float:
    """MiB: PSS of the master and every worker."""
    pids = [server.process.pid, *worker_pids(server.process.pid)]
    return sum(memory(pid)["pss"] or 0 for pid in pids) / MIB


def query_words(base: str, words: list[str], threads: int = 4) -> None:
    """GET /similar for each word, each over a new connection (so that every worker gets its share)."""
    def ask(word: str) -> None:
        response = requests.get(f"{base}/similar", params={"word": word, "k": 10}, timeout=60,
                                headers={"Connection": "close"})
        response.raise_for_status()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(ask, words))


def recall_at_10(model_dir: Path, cache_dir: Path, kind: str, words: list[str]) -> float:
    """Mean recall@10 of the service's /similar answers (its own code, its prepared data) against brute
    force over the unit vectors."""
    import faiss

    from service import derived, settings
    from service.embeddings import Embeddings
    from trainer import artifact

    model = artifact.load(model_dir, check_values=False)
    config = settings.load({"MODEL_DIR": str(model_dir), "CACHE_DIR": str(cache_dir), "INDEX": kind})
    served = Embeddings(model, derived.open_prepared(model, config), config)
    unit = served.derived.unit
    rows = [served.row(w) for w in words]
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, truth = faiss.knn(np.ascontiguousarray(unit[rows]), unit, 11, metric=faiss.METRIC_INNER_PRODUCT)
    hits = [len({served.row(w) for w, _ in served.similar(word, 10)} & set(t.tolist()) - {row}) / 10
            for word, row, t in zip(words, rows, truth)]
    return float(np.mean(hits))


def measure_kind(kind: str, model_dir: Path, tmp: Path, words: list[str], args, peer: Peer | None) -> dict:
    cache = tmp / f"cache-{kind}"
    env = {"MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(cache), "INDEX": kind, "WEB_CONCURRENCY": "2"}
    log, row = tmp / f"gunicorn-{kind}.log", {"kind": kind}
    rng = random.Random(1)
    sample = rng.sample(words, args.queries)
    server = Server("service:create_app()", env, log)
    row["first start s"] = server.startup
    server.stop()
    server = Server("service:create_app()", env, log)
    row["warm start s"] = server.startup
    try:
        query_words(server.base, sample)
        row["PSS 2 workers MiB"] = total_pss(server)
        vectors = np.random.default_rng(0).standard_normal((100, args.dim)).round(4).tolist()
        loads = {"GET /similar word": [("GET", f"/similar?word={quote(w)}&k=10", None) for w in sample],
                 "POST /similar vector": [("POST", "/similar", json.dumps({"vector": v, "k": 10})) for v in vectors]}
        for label, items in loads.items():
            for c in (1, 8):
                row[label, c] = wrk(server.base, label, items, c, args.duration, tmp)
        if peer is not None and kind != "flat":  # the exact scan is two orders of magnitude slower
            rounds = [(wrk(server.base, "GET /similar word", loads["GET /similar word"], 8, args.duration, tmp),
                       peer.load(8, args.duration, tmp)) for _ in range(args.rounds)]
            row["rounds"] = [(ours["rps"], theirs["rps"]) for ours, theirs in rounds]
    finally:
        server.stop()
    server = Server("service:create_app()", {**env, "WEB_CONCURRENCY": "4"}, log)
    try:
        query_words(server.base, sample)
        row["PSS 4 workers MiB"] = total_pss(server)
    finally:
        server.stop()
    row["recall@10"] = recall_at_10(model_dir, cache, kind, rng.sample(words, args.recall_words))
    print(f"measured INDEX={kind}", flush=True)
    return row


class Peer:
    """bench/serve_load.py's 100,000 x 100 model under INDEX=hnsw (the service's approximate figures before
    this scale), served while the big model is measured: GET /similar by word."""

    def __init__(self, tmp: Path):
        from trainer import artifact

        model_dir = synthetic_model(tmp, 100_000, 100)
        words = random.Random(1).sample(list(artifact.load(model_dir).words), 2000)
        self.items = [("GET", f"/similar?word={quote(w)}&k=10", None) for w in words]
        env = {"MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(tmp / "cache-reference"), "INDEX": "hnsw",
               "WEB_CONCURRENCY": "2"}
        self.server = Server("service:create_app()", env, tmp / "gunicorn-reference.log")

    def load(self, connections: int, duration: int, tmp: Path) -> dict:
        return wrk(self.server.base, "reference", self.items, connections, duration, tmp)


def print_tables(imports, rows, matrix_mib: float, args, peer: dict | None) -> None:
    """peer: wrk's figures for the peer at 1 connection, or None."""
    print(f"\nimport of the {args.words:,} x {args.dim} binary file ({matrix_mib:,.0f} MiB of float32)")
    print("| command | seconds | peak RSS MiB |\n|---|---|---|")
    for name, seconds, rss in imports:
        print(f"| {name} | {seconds:.1f} | {rss:,.0f} |")
    print(f"\nserving, 2 gunicorn workers unless said; PSS in MiB and as a multiple of input_vectors.npy")
    print("| INDEX | first start s | warm start s | PSS 2 workers | PSS 4 workers | 2 -> 4 | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        two, four = r["PSS 2 workers MiB"], r["PSS 4 workers MiB"]
        print(f"| {r['kind']} | {r['first start s']:.1f} | {r['warm start s']:.1f} | {two:,.0f} "
              f"({two / matrix_mib:.2f}x) | {four:,.0f} ({four / matrix_mib:.2f}x) | "
              f"+{(four - two) / matrix_mib * 100:.1f} % | {r['recall@10']:.4f} |")
    print("\n| INDEX | request | conc | req/s | p50 ms | p99 ms | errors | scan GB/s at p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for label in ("GET /similar word", "POST /similar vector"):
            for c in (1, 8):
                w = r[label, c]
                exact_scan = r["kind"] == "flat" and (label.startswith("POST") or not r.get("tables"))
                rate = f"{matrix_mib * MIB / 1e9 / (w['p50_us'] / 1e6):.1f}" if exact_scan and c == 1 else ""
                print(f"| {r['kind']} | {label} | {c} | {w['rps']:,.0f} | {w['p50_us'] / 1000:.2f} | "
                      f"{w['p99_us'] / 1000:.2f} | {w['errors']} | {rate} |")
    if peer:
        print(f"| hnsw, 100,000 x 100 (peer) | GET /similar word | 1 | {peer['rps']:,.0f} | "
              f"{peer['p50_us'] / 1000:.2f} | {peer['p99_us'] / 1000:.2f} | {peer['errors']} | |")
    compared = [r for r in rows if r.get("rounds")]
    if compared:
        print(f"\nGET /similar by word at 8 connections, alternating with the peer ({args.rounds} rounds of "
              f"{args.duration} s each): req/s")
        print("| INDEX | rounds: this / peer | median | peer median | median ratio |\n|---|---|---|---|---|")
        for r in compared:
            ours, theirs = zip(*r["rounds"])
            pairs = ", ".join(f"{a:,.0f} / {b:,.0f}" for a, b in r["rounds"])
            ratio = statistics.median(a / b for a, b in r["rounds"])
            print(f"| {r['kind']} | {pairs} | {statistics.median(ours):,.0f} | {statistics.median(theirs):,.0f} "
                  f"| {ratio:.2f}x |")


def run(args, tmp: Path) -> None:
    from trainer import artifact

    work = Path(args.workdir) if args.workdir else tmp
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"synthetic-{args.words}x{args.dim}.bin"
    if not source.exists():
        write_word2vec_bin(source, args.words, args.dim)
    model_dir = tmp / "imported"
    imports = import_both(source, model_dir)
    model = artifact.load(model_dir, check_values=False)
    matrix_mib = model.input_vectors.nbytes / MIB
    words = list(model.words)
    print(f"model {model_dir}: {model.vocab_size:,} x {model.dim}; load average {os.getloadavg()[0]:.1f}", flush=True)
    peer = None if args.no_reference else Peer(tmp)
    try:
        rows = [measure_kind(kind, model_dir, tmp, words, args, peer) for kind in args.kinds]
        alone = peer and peer.load(1, args.duration, tmp)
    finally:
        if peer is not None:
            peer.server.stop()
    print_tables(imports, rows, matrix_mib, args, alone)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=1_000_000, help="vocabulary size")
    parser.add_argument("--dim", type=int, default=300, help="dimensions")
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=["flat", "ivf", "hnsw"],
                        help="comma-separated INDEX kinds to measure")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk load per cell")
    parser.add_argument("--queries", type=int, default=1000, help="GET /similar sent before reading PSS")
    parser.add_argument("--recall-words", type=int, default=1000, help="words whose recall@10 is measured")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the peer: the 100,000 x 100 model under INDEX=hnsw, measured in the same run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of 8 connections against the peer, per index kind")
    parser.add_argument("--workdir", help="keep the generated .bin file here between runs (default: temporary)")
    args = parser.parse_args(argv)
    return run_in_temporary_folder(run, args, "serve_scale-")


if __name__ == "__main__":
    sys.exit(main())
