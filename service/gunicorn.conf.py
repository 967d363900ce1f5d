"""Gunicorn settings for the service: derived data prepared once before forking, mapped by every worker."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
_SERVING = "SKIPGRAM_SERVING"  # the contents every worker serves and the files held for them (below)
_RELOAD_ERROR = "SKIPGRAM_RELOAD_ERROR"  # why the last HUP kept the previous contents (absent: it did not)
_LATER_PID = "SKIPGRAM_LATER_TABLES_PID"  # the background precompute of the later tables, while it runs
_METRICS = "PROMETHEUS_MULTIPROC_DIR"  # the workers' metrics files (prometheus-client's multiprocess mode)
_METRICS_PREFIX = "skipgram-metrics-"


class _Unservable(Exception):
    """The model folder's contents cannot be served (the message says why)."""


def on_starting(server):
    """Prepare the model's derived data once, with every core, in a child process rather than the master
    (see above), so that workers only map it; stop if the model is unusable."""
    try:
        _serve_folder(server)
    except _Unservable as exc:
        server.log.error("cannot serve: %s", exc)
        sys.exit(1)


def on_reload(server):
    """HUP: serve what the model folder holds now (gunicorn then starts new workers and stops the old
    ones). A folder that cannot be served leaves the previous contents served, by the new workers too,
    with the reason in /readyz and /metrics; the master never stops for it."""
    try:
        _serve_folder(server)
        os.environ.pop(_RELOAD_ERROR, None)
    except _Unservable as exc:
        serving = json.loads(os.environ[_SERVING])["digest"]
        server.log.error("HUP: the model folder cannot be served (%s); still serving contents %s", exc, serving)
        os.environ[_RELOAD_ERROR] = json.dumps(
            {"error": str(exc), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _serve_folder(server) -> None:
    """Prepare the folder's contents (service.precompute), then hold its files open and name them, with
    their digest, in the environment the workers inherit: every worker loads those files, so all serve
    the same contents even after the folder is replaced, until the next HUP. Raises _Unservable."""
    with subprocess.Popen(_PRECOMPUTE, env=_precompute_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as run:
        problem = ""
        for line in run.stderr:  # passed on as it comes (it reports progress), the last line kept
            sys.stderr.write(line)
            problem = line.strip().removeprefix("error: ") or problem
        digest = run.stdout.read().split()
    if run.returncode != 0 or not digest:
        died = f"killed by signal {-run.returncode} (out of memory?)" if run.returncode < 0 else problem
        raise _Unservable(f"preparing the model failed: {died or 'no reason given'}")
    try:
        config = service_settings.load({"SERVING": None, "RELOAD_ERROR": None})
        held = artifact.hold(config["MODEL_DIR"])
    except (artifact.ModelError, service_settings.SettingsError) as exc:
        raise _Unservable(str(exc)) from None
    model = artifact.load(config["MODEL_DIR"], held=held, check_values=False)
    if model.digest != digest[-1]:
        artifact.release(held)
        raise _Unservable(f"{model.path}: the folder changed while it was being prepared: send HUP again")
    previous = json.loads(os.environ.get(_SERVING, "null"))
    os.environ[_SERVING] = json.dumps({"digest": model.digest, "held": held})
    if previous is not None:
        artifact.release(previous["held"])  # the workers that served them hold their own copies
    server.log.info("serving %s (contents %s)", model.path, model.digest)
    _preload(server, model, config)
    _build_later_tables(server, model, config)


_PRECOMPUTE = [sys.executable, "-m", "service.precompute", "--threads", str(_CORES)]


def _precompute_env(**settings) -> dict:
    """The environment of a precompute: this one's, without what is only for the workers, with every core."""
    env = {name: value for name, value in os.environ.items() if name not in (_SERVING, _RELOAD_ERROR, _LATER_PID)}
    env.update({f"SKIPGRAM_{name}": str(value) for name, value in settings.items()}, OMP_NUM_THREADS=str(_CORES))
    return env


def _build_later_tables(server, model: artifact.Model, config) -> None:
    """The tables beyond TABLES_MAX_COST but within TABLES_LATER_MAX_COST are built once the server is
    serving, by a background precompute at low priority; then the master sends itself HUP, so that new
    workers serve them (the old ones serve until then, as for any HUP). The first start stays within its
    budget; the tables change no answer, only how fast it comes."""
    from service import derived

    later = config["TABLES_LATER_MAX_COST"]
    if later <= config["TABLES_MAX_COST"] or os.environ.get(_LATER_PID):
        return
    if derived.make_plan(model, {**config, "TABLES_MAX_COST": later}) == derived.make_plan(model, config):
        return
    run = subprocess.Popen(_PRECOMPUTE, env=_precompute_env(TABLES_MAX_COST=later), stdout=subprocess.PIPE,
                           text=True)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, run.pid, 10)  # the workers' answers come first
    os.environ[_LATER_PID] = str(run.pid)
    server.log.info("building the tables within TABLES_LATER_MAX_COST in the background (pid %s)", run.pid)

    def finish() -> None:
        digest = run.stdout.read().split()
        run.wait()
        os.environ.pop(_LATER_PID, None)
        serving = json.loads(os.environ.get(_SERVING, "null"))
        if run.returncode != 0 or not digest or serving is None or digest[-1] != serving["digest"]:
            server.log.warning("the later tables were not built (precompute exit %s, or the model changed "
                               "meanwhile): serving goes on without them", run.returncode)
            return
        os.environ["SKIPGRAM_TABLES_MAX_COST"] = str(later)  # for the HUP's precompute and the new workers
        server.log.info("the later tables are built: HUP to serve them")
        os.kill(os.getpid(), signal.SIGHUP)
    threading.Thread(target=finish, name="later tables", daemon=True).start()


def _preload(server, model: artifact.Model, config) -> None:
    """What workers share by inheriting it rather than mapping it: the service's modules (their import
    state is ~15 MB a worker otherwise) and the IVF lists. No OpenMP code runs here (see above)."""
    from service import api, derived  # noqa: F401 (imported for the workers)

    try:
        derived.preload(model, config)
    except artifact.ModelError as exc:
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
    with contextlib.suppress(ValueError, OSError):  # a background precompute would outlive the server
        os.kill(int(os.environ.get(_LATER_PID, "")), signal.SIGTERM)
    folder = os.environ.get(_METRICS, "")
    if os.path.basename(folder).startswith(_METRICS_PREFIX):  # one when_ready made, not a folder inherited
        shutil.rmtree(folder, ignore_errors=True)


