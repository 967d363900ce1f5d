"""Gunicorn settings for the service: derived data prepared once before forking, mapped by every worker."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from service import settings as service_settings
from trainer import artifact

_CORES = service_settings.cores()

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
accesslog = None  # the app writes one JSON line per request to standard output (service.observability)
errorlog = "-"
# FAISS issue 5206: a search in a forked child can hang once the parent ran multi-threaded OpenMP code.
# So nothing is preloaded: each worker opens the model and its derived data, memory-mapped, so workers
# share their pages.
preload_app = False
# No runtime management socket: nothing here uses it, and instances on one host would share its path.
control_socket_disable = True
_DIGEST = "SKIPGRAM_SERVING_DIGEST"  # the contents every worker must serve, set below for the workers
_METRICS = "PROMETHEUS_MULTIPROC_DIR"  # the workers' metrics files (prometheus-client's multiprocess mode)
_METRICS_PREFIX = "skipgram-metrics-"


def on_starting(server):
    """Prepare the model's derived data once, with every core, in a child process rather than the master
    (see above), so that workers only map it; stop if the model is unusable. The digest of the contents
    prepared is handed to the workers (through the environment they inherit): a worker started later,
    after the folder changed, refuses to serve other contents than its siblings."""
    os.environ.pop(_DIGEST, None)
    env = dict(os.environ, OMP_NUM_THREADS=str(_CORES))
    command = [sys.executable, "-m", "service.precompute", "--threads", str(_CORES)]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        server.log.error("cannot serve: preparing the model failed (message above)")
        sys.exit(result.returncode)
    digest = result.stdout.split()[-1]
    os.environ[_DIGEST] = json.dumps(digest)
    _preload(server, digest)


def _preload(server, digest: str) -> None:
    """What workers share by inheriting it rather than mapping it: the service's modules (their import
    state is ~15 MB a worker otherwise) and the IVF lists. No OpenMP code runs here (see above)."""
    from service import api, derived  # noqa: F401 (imported for the workers)

    try:
        config = service_settings.load()
        model = artifact.load(config["MODEL_DIR"], check_values=False)
        if model.digest == digest:
            derived.preload(model, config)
    except (artifact.ModelError, service_settings.SettingsError) as exc:
        server.log.warning("nothing preloaded: %s", exc)


def when_ready(server):
    """A private folder for the workers' metrics, made at each start (not at HUP: counts go on), before
    the workers fork, and named in the environment they inherit. prometheus-client chooses its
    multiprocess mode when first imported, so nothing in the master may have imported it before."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported in the master before the metrics folder was set "
                           "(preload_app?): the workers' metrics would not add up")
    os.environ[_METRICS] = tempfile.mkdtemp(prefix=_METRICS_PREFIX, dir=worker_tmp_dir)
    server.log.info("workers' metrics in %s", os.environ[_METRICS])


def child_exit(server, worker):
    from prometheus_client import multiprocess  # imported after when_ready named the folder

    multiprocess.mark_process_dead(worker.pid)  # its live gauges (requests in progress, model served) go


def on_exit(server):
    folder = os.environ.get(_METRICS, "")
    if os.path.basename(folder).startswith(_METRICS_PREFIX):  # one when_ready made, not a folder inherited
        shutil.rmtree(folder, ignore_errors=True)


def on_reload(server):
    on_starting(server)  # a HUP may follow a new model saved at MODEL_DIR


def post_fork(server, worker):
    """A worker forked after the model folder changed (one replacing a worker that died) exits before it
    loads anything, and is started again a second later: never two contents served at once. HUP moves
    every worker to the folder's new contents."""
    pinned = json.loads(os.environ.get(_DIGEST, "null"))
    try:
        found = artifact.read_digest(service_settings.load()["MODEL_DIR"])
    except (artifact.ModelError, service_settings.SettingsError):
        return  # the worker's own start reports it
    if pinned is not None and found != pinned:
        server.log.error("worker %s not started: the model folder now holds contents %s, this server serves "
                         "%s; send HUP to serve the new contents", worker.pid, found, pinned)
        time.sleep(1)
        sys.exit(1)
