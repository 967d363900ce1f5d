"""Gunicorn settings for the service: the model is read and its index built in each worker, never the master."""
import os
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_CORES = len(os.sched_getaffinity(0))

# One thread per worker for FAISS (OpenMP) and numpy (OpenBLAS): a single query gains nothing from more,
# and N workers on N cores must not each start N threads. Set before any worker imports either library.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", _CORES))
# 1 means gunicorn's sync worker: fastest for sub-millisecond answers (no hand-off between threads).
threads = int(os.environ.get("THREADS", "1"))
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # heartbeat file off the disk
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
# FAISS issue 5206: a search in a forked child can hang once the parent ran multi-threaded OpenMP code.
# So nothing is preloaded: each worker loads the model (memory-mapped, so workers share its pages).
preload_app = False
# No runtime management socket: nothing here uses it, and instances on one host would share its path.
control_socket_disable = True


def on_starting(server):
    """Build the model's derived data (tables, HNSW index) once, with every core, in a child process
    rather than the master (see above), so that workers only read it; stop if the model is unusable."""
    env = dict(os.environ, OMP_NUM_THREADS=str(_CORES))
    command = [sys.executable, "-m", "service.precompute", "--threads", str(_CORES)]
    result = subprocess.run(command, env=env, cwd=_ROOT, check=False)
    if result.returncode != 0:
        server.log.error("cannot serve: preparing the model failed (message above)")
        sys.exit(result.returncode)


def on_reload(server):
    on_starting(server)  # a HUP may follow a new model saved at MODEL_DIR
