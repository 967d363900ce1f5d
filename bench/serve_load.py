"""Load test of the embedding service under gunicorn on loopback, beside a gensim baseline and a ceiling.

    python bench/serve_load.py [--model PATH] [--duration 3] [--repeat 2] [--concurrency 1,8,32]
    python bench/serve_load.py [--model PATH] --recall-only

Every server runs with service/gunicorn.conf.py (same workers, same worker class, same access log) on
127.0.0.1, and is driven by wrk (Debian package `wrk`) with a Lua script that rotates over requests for
random vocabulary words. The baseline is the common way to serve word2vec: gensim's
KeyedVectors.most_similar inside a Flask view. The ceiling is a Flask view answering a constant body of
the size of the service's answer: what gunicorn + Flask allow at all on this machine.
Without --model, a synthetic 100,000 x 100 model of clustered random vectors is written to a temporary
folder (deterministic, so the derived-data cache in --cache-dir is reused from one run to the next).
Last, the recall@10 of INDEX=hnsw and INDEX=ivf against the exact index is measured over the whole
vocabulary (up to --recall-words) through service.embeddings, with the service's settings (SKIPGRAM_HNSW_*,
SKIPGRAM_IVF_* from the environment); --recall-only measures just that, without wrk or servers.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the service and trainer packages

from service import settings as service_settings  # noqa: E402
from trainer import artifact  # noqa: E402

LUA = """
local items = {ITEMS}
local prepared, n = {}, 0
function init(args)
  local headers = {["Content-Type"] = "application/json", ["X-Endpoint"] = [==[{LABEL}]==]}
  for i, item in ipairs(items) do
    prepared[i] = wrk.format(item[1], item[2], headers, item[3])
  end
  n = math.random(#prepared)
end
function request()
  n = n % #prepared + 1
  return prepared[n]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ---------------------------------------------------------------------------- the two reference apps

def baseline_app():
    """The common way: gensim KeyedVectors.most_similar in a Flask view, jsonify for the answer."""
    from flask import Flask, jsonify, request
    from gensim.models import KeyedVectors

    model = artifact.load(os.environ["MODEL_DIR"])
    vectors = KeyedVectors(model.dim)
    vectors.add_vectors(list(model.words), np.asarray(model.input_vectors))
    vectors.fill_norms()
    app = Flask(__name__)

    @app.get("/similar")
    def similar():
        word, k = request.args["word"], int(request.args.get("k", 10))
        if word not in vectors.key_to_index:
            return jsonify(error=f"unknown word: {word}"), 404
        neighbors = [{"word": w, "score": s} for w, s in vectors.most_similar(word, topn=k)]
        return jsonify(word=word, k=k, neighbors=neighbors)
    return app


def ceiling_app():
    """A constant answer per endpoint, named by the X-Endpoint header the load generator sends, read from
    CEILING_BODIES (JSON: {endpoint label: body})."""
    from flask import Flask, Response, request

    bodies = {key: body.encode() for key, body in json.loads(Path(os.environ["CEILING_BODIES"]).read_text()).items()}
    app = Flask(__name__)

    @app.route("/<path:path>", methods=["GET", "POST"])
    def constant(path):
        return Response(bodies[request.headers["X-Endpoint"]], mimetype="application/json")
    return app


# ----------------------------------------------------------------------------------------- servers

def synthetic_model(folder: Path, size: int, dim: int, seed: int = 0) -> Path:
    """Clustered random vectors: 2,000 centres, each word a centre plus as much noise (cosine to its
    cluster-mates around 0.5); output vectors alike, scaled for a softmax that is neither flat nor one-hot."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    which = rng.integers(0, len(centres), size)
    w_in = (centres[which] + rng.standard_normal((size, dim), dtype=np.float32)) * (2 / np.sqrt(dim))
    w_out = (centres[which] + rng.standard_normal((size, dim), dtype=np.float32)) * (1.5 / np.sqrt(dim))
    counts = (1e8 / np.arange(1, size + 1)).astype(np.int64)
    return artifact.save(folder / f"synthetic-{size}x{dim}", [f"w{i}" for i in range(size)], counts, w_in, w_out,
                         {"objective": "negative-sampling", "source": {"synthetic": "bench/serve_load.py"}})


# What a server serves once the tables it builds after its start (TABLES_LATER_MAX_COST) are served, built
# before it is ready instead: the load is measured on that steady state, with no background build or HUP.
STEADY_TABLES = {"SKIPGRAM_TABLES_MAX_COST": str(service_settings.DEFAULTS["TABLES_LATER_MAX_COST"])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One gunicorn instance with the service's configuration, on a free loopback port."""

    def __init__(self, app: str, env: dict, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn.conf.py", "--bind",
                   f"127.0.0.1:{self.port}", "--pythonpath", "bench", app]
        started = time.perf_counter()
        with open(log, "ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                            stderr=out)
        self.startup = self._wait(started, probe="/readyz" if app.startswith("service") else "/")  # seconds

    def _wait(self, started: float, probe: str, limit: float = 600) -> float:
        while time.perf_counter() - started < limit:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}; see the log")
            try:
                requests.get(self.base + probe, timeout=5)
                return time.perf_counter() - started
            except requests.ConnectionError:
                time.sleep(0.1)
        raise SystemExit("gunicorn did not start in time")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


# ---------------------------------------------------------------------------------------- load

def workload(words: list[str], dim: int, count: int = 2000) -> dict[str, list[tuple]]:
    """Requests per endpoint: (method, path, body or nil), for random vocabulary words."""
    rng = random.Random(0)
    pick = lambda: quote(rng.choice(words))  # noqa: E731
    vectors = np.random.default_rng(0).standard_normal((200, dim)).round(4).tolist()
    return {
        "GET /similar word (exact)": [("GET", f"/similar?word={pick()}&k=10", None) for _ in range(count)],
        "GET /similar analogy": [("GET", f"/similar?positive={pick()},{pick()}&negative={pick()}&k=10", None)
                                 for _ in range(count)],
        "POST /similar vector": [("POST", "/similar", json.dumps({"vector": v, "k": 10})) for v in vectors],
        "GET /context-probs": [("GET", f"/context-probs?word={pick()}&k=10", None) for _ in range(count)],
        "GET /vector": [("GET", f"/vector?word={pick()}", None) for _ in range(count)],
    }


def wrk(base: str, label: str, items: list[tuple], concurrency: int, duration: int, scripts: Path) -> dict:
    lua = "{" + ",".join("{%s,%s,%s}" % (_lua(m), _lua(p), _lua(b) if b else "nil") for m, p, b in items) + "}"
    script = scripts / f"load-{abs(hash((label, lua)))}.lua"
    script.write_text(LUA.replace("{ITEMS}", lua).replace("{LABEL}", label))
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "5s", "-s", str(script), base]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.split("RESULT ", 1)[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _lua(text: str) -> str:
    return "[==[" + text + "]==]"


def same_answers(service: str, other: str, words: list[str]) -> int:
    """Words for which `service` and `other` give the same answer to /similar: the same words with scores
    within 1e-5, in the same order but for neighbours whose scores differ by less than 1e-6 (float32
    rounding decides their order, and two exact programs may round differently)."""
    same = 0
    for word in words:
        a, b = (requests.get(f"{base}/similar", params={"word": word, "k": 10}, timeout=10).json()["neighbors"]
                for base in (service, other))
        scores_a, scores_b = np.array([n["score"] for n in a]), np.array([n["score"] for n in b])
        swapped = [i for i, (x, y) in enumerate(zip(a, b)) if x["word"] != y["word"]]
        same += (len(a) == len(b) and {n["word"] for n in a} == {n["word"] for n in b}
                 and np.allclose(scores_a, scores_b, atol=1e-5) and all(
                     abs(scores_a[i] - scores_a[j]) < 1e-6 for i in swapped for j in swapped))
    return same


def approximate_recall(model_dir: Path, cache_dir: Path, size: int) -> str:
    """Mean recall@10 of the service's approximate answers to /similar?word= (INDEX=hnsw and ivf) against
    its exact ones, over every vocabulary word (a random sample of `size` words in larger vocabularies):
    the service's own code with its settings, reading (or first building) the derived data in `cache_dir`."""
    from service import derived, settings
    from service.embeddings import Embeddings

    config = settings.load({"MODEL_DIR": str(model_dir), "CACHE_DIR": str(cache_dir)})
    model, threads = artifact.load(model_dir), settings.cores()
    served = {kind: Embeddings(model, derived.prepare(model, {**config, "INDEX": kind}, threads), config)
              for kind in ("flat", "hnsw", "ivf")}
    words = random.Random(2).sample(model.words, min(size, model.vocab_size))
    exact = [{w for w, _ in served["flat"].similar(word, 10)} for word in words]
    lines = []
    for kind in ("hnsw", "ivf"):
        recall = np.mean([len(truth & {w for w, _ in served[kind].similar(word, 10)}) / 10
                          for word, truth in zip(words, exact)])
        facts = ", ".join(f"{k}={v}" for k, v in served[kind].describe()["index"].items() if k not in ("type", "exact"))
        lines.append(f"{kind} recall@10 against the exact index: {recall:.4f} over {len(words)} of "
                     f"{model.vocab_size} words ({facts})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- report

def run(args, tmp: Path) -> None:
    model_dir = Path(args.model) if args.model else synthetic_model(tmp, args.words, args.dim)
    if args.recall_only:
        print(approximate_recall(model_dir, args.cache_dir, args.recall_words))
        return
    model = artifact.load(model_dir)
    env = {"MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(args.cache_dir),
           "WEB_CONCURRENCY": str(args.workers), **STEADY_TABLES}
    log, loads = tmp / "gunicorn.log", workload(list(model.words), model.dim)
    sample = random.Random(1).sample(list(model.words), min(300, model.vocab_size))
    print(f"model: {model_dir} ({model.vocab_size} words x {model.dim}); {args.workers} workers; "
          f"best of {args.repeat} x {args.duration:g} s per cell; load average before: {os.getloadavg()[0]:.1f}",
          flush=True)

    servers: dict[str, Server] = {}
    try:
        first = servers["first"] = Server("service:create_app()", {**env, "INDEX": "flat"}, log)  # may build the tables: once per model
        servers.pop("first").stop()
        servers["flat"] = Server("service:create_app()", {**env, "INDEX": "flat"}, log)
        servers["hnsw"] = Server("service:create_app()", {**env, "INDEX": "hnsw"}, log)
        servers["ivf"] = Server("service:create_app()", {**env, "INDEX": "ivf"}, log)
        servers["baseline"] = Server("serve_load:baseline_app()", env, log)
        bodies = {label: requests.request(m, servers["flat"].base + p, data=b, timeout=10,
                                          headers={"Content-Type": "application/json"}).text
                  for label, (m, p, b) in ((label, items[0]) for label, items in loads.items())}
        (tmp / "bodies.json").write_text(json.dumps(bodies))
        servers["ceiling"] = Server("serve_load:ceiling_app()", {**env, "CEILING_BODIES": str(tmp / "bodies.json")},
                                    log)
        same = same_answers(servers["flat"].base, servers["baseline"].base, sample)
        results = measure_all(servers, loads, args, tmp)
    finally:
        for server in servers.values():
            server.stop()
    print(f"startup (to /readyz): first start {first.startup:.1f} s (builds the tables when the cache is cold), "
          f"restart {servers['flat'].startup:.1f} s, INDEX=hnsw {servers['hnsw'].startup:.1f} s, INDEX=ivf "
          f"{servers['ivf'].startup:.1f} s (each builds its index when not cached)")
    print_table(results, args.concurrency)
    print(f"\nsame answers as gensim most_similar (words, order up to float32 ties, scores within 1e-5): "
          f"{same}/{len(sample)} words")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(approximate_recall(model_dir, args.cache_dir, args.recall_words), flush=True)


def measure_all(servers: dict, loads: dict, args, scripts: Path) -> dict:
    """{(row label, concurrency): wrk result}. Each round measures the baseline, then every endpoint
    followed at once by its ceiling, so that compared cells run seconds apart on a machine whose other
    load may change; of `--repeat` rounds, each cell keeps its fastest (other load only ever slows)."""
    results, by_word = {}, "GET /similar word (exact)"
    for c in args.concurrency:
        def cell(row: str, server: str, label: str) -> None:
            result = wrk(servers[server].base, label, loads[label], c, args.duration, scripts)
            if (row, c) not in results or result["rps"] > results[row, c]["rps"]:
                results[row, c] = result

        for _ in range(args.repeat):
            cell("baseline: gensim most_similar", "baseline", by_word)
            for label in loads:
                cell(label, "flat", label)
                cell("ceiling for " + label, "ceiling", label)
            cell("GET /similar word (HNSW)", "hnsw", by_word)
            cell("GET /similar word (IVF)", "ivf", by_word)
        print(f"measured concurrency {c}", flush=True)
    return results


def print_table(results: dict, levels: list[int]) -> None:
    labels = list(dict.fromkeys(label for label, _ in results))
    width = max(map(len, labels))
    header = (f"{'endpoint':{width}} {'conc':>4} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
              f"{'x baseline':>10} {'of ceiling':>10}")
    print("\n" + header + "\n" + "-" * len(header))
    for label in labels:
        for c in levels:
            r = results[label, c]
            base = results["baseline: gensim most_similar", c]["rps"]
            ceiling = results.get(("ceiling for " + label.replace("(HNSW)", "(exact)").replace("(IVF)", "(exact)"), c))
            of_ceiling = f"{r['rps'] / ceiling['rps']:.2f}" if ceiling and not label.startswith("ceiling") else ""
            print(f"{label:{width}} {c:>4} {r['rps']:>7.0f} {r['p50_us'] / 1000:>7.2f} {r['p99_us'] / 1000:>7.2f} "
                  f"{r['errors']:>6} {r['rps'] / base:>10.2f} {of_ceiling:>10}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a synthetic one in a temporary folder)")
    parser.add_argument("--words", type=int, default=100_000, help="synthetic model: vocabulary size")
    parser.add_argument("--dim", type=int, default=100, help="synthetic model: dimensions")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--duration", type=int, default=3, help="seconds of load per cell (whole seconds, as wrk takes)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of measurement; the fastest counts")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 32],
                        help="comma-separated connection counts")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "serve_load",
                        help="the service's cache of derived data (tables, HNSW index), kept between runs")
    parser.add_argument("--recall-words", type=int, default=100_000,
                        help="recall: words compared (the whole vocabulary when smaller)")
    parser.add_argument("--recall-only", action="store_true",
                        help="measure only the approximate indexes' recall: no servers, no load")
    args = parser.parse_args(argv)
    return run_in_temporary_folder(run, args, "serve_load-", needs_wrk=not args.recall_only)


def run_in_temporary_folder(run, args, prefix: str, needs_wrk: bool = True) -> int:
    """run(args, tmp) in a new temporary folder, removed afterwards; prints the total time. Exit code."""
    if needs_wrk and not shutil.which("wrk"):
        print("error: wrk not found (`make bench-serve` installs the Debian package)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    started = time.perf_counter()
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
