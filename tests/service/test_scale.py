"""At scale: a ~200 MB model under real gunicorn costs one shared copy of its vectors, measured not assumed."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.service.conftest import Gunicorn
from trainer import artifact

pytestmark = pytest.mark.slow
SIZE, DIM = 200_000, 256  # input_vectors.npy: 205 MB
MB = 1 << 20


@pytest.fixture(scope="module")
def large_model(tmp_path_factory) -> Path:
    """200,000 x 256 random input vectors and no output vectors (so /context-probs plays no part)."""
    vectors = np.random.default_rng(0).standard_normal((SIZE, DIM), dtype=np.float32)
    return artifact.save(tmp_path_factory.mktemp("large") / "large", [f"w{i}" for i in range(SIZE)],
                         np.ones(SIZE, np.int64), vectors, None, {"objective": None})


def memory(pid: int) -> dict[str, int]:
    """Bytes of Pss, Pss_Anon, Pss_File, Pss_Shmem and Rss of a process (/proc/PID/smaps_rollup)."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return {name: int(kb) * 1024 for name, kb in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}


def served_memory(model_dir: Path, logs: Path, cache: Path, workers: int) -> dict[int, dict[str, int]]:
    """Serve the model with `workers` workers, send every worker a share of the same 200 requests (exact
    scans of the whole unit matrix), and return {pid: memory(pid)} of the master and every worker."""
    logs.mkdir()
    running = Gunicorn(model_dir, logs, INDEX="flat", SKIPGRAM_TABLES_MAX_COST="0", SKIPGRAM_CACHE_DIR=str(cache),
                       WEB_CONCURRENCY=str(workers))
    try:
        running.wait_ready(limit=300)
        queries = np.random.default_rng(1).standard_normal((100, DIM)).round(4).tolist()
        close = {"Connection": "close"}  # a new connection each: every worker takes its share

        def ask(i: int) -> int:
            if i % 2:
                response = requests.post(f"{running.base}/similar", json={"vector": queries[i // 2], "k": 10},
                                         headers=close, timeout=60)
            else:
                response = requests.get(f"{running.base}/similar", params={"word": f"w{i * 997}", "k": 10},
                                        headers=close, timeout=60)
            return response.status_code

        with ThreadPoolExecutor(2 * workers) as pool:
            assert list(pool.map(ask, range(200))) == [200] * 200
        pids = running.workers()
        assert len(pids) == workers
        answered = [line["pid"] for line in running.access_lines()]
        assert all(answered.count(pid) >= 10 for pid in pids), answered  # each worker scanned
        measured = {pid: memory(pid) for pid in [running.process.pid, *sorted(pids)]}
    finally:
        stopped = running.stop()
    assert stopped == 0
    return measured


def report(workers: int, measured: dict[int, dict[str, int]]) -> int:
    total = sum(m["Pss"] for m in measured.values())
    print(f"\n{workers} workers: total PSS {total / MB:.1f} MB")
    for role, (pid, m) in zip(["master"] + ["worker"] * workers, measured.items()):
        print(f"  {role} {pid}: Pss {m['Pss'] / MB:.1f} MB (anon {m['Pss_Anon'] / MB:.1f}, "
              f"file {m['Pss_File'] / MB:.1f}, shmem {m['Pss_Shmem'] / MB:.1f}), Rss {m['Rss'] / MB:.1f} MB")
    return total


def test_workers_share_one_copy_of_the_vectors(large_model, tmp_path):
    vectors = (large_model / artifact.INPUT_FILE).stat().st_size
    two = report(2, served_memory(large_model, tmp_path / "two", tmp_path / "cache", 2))
    three = report(3, served_memory(large_model, tmp_path / "three", tmp_path / "cache", 3))
    print(f"input_vectors.npy {vectors / MB:.1f} MB; a third worker adds {(three - two) / MB:.1f} MB "
          f"(limit {0.15 * vectors / MB:.1f}); two workers: {two / MB:.1f} MB "
          f"(limit {(1.3 * vectors + 150 * MB) / MB:.1f})")
    assert three - two < 0.15 * vectors
    assert two <= 1.3 * vectors + 150 * MB
