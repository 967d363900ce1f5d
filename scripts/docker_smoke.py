"""Smoke test of the service image, run by scripts/smoke.Dockerfile inside a RUN step, as the image's user.

  python docker_smoke.py --model-dir DIR   write a tiny model folder with planted neighbours to DIR
                                           (trainer.artifact.save), start the image's command on it as a
                                           mounted model is given (MODEL_DIR=DIR), query it, stop it
  python docker_smoke.py --baked           the same on the model baked into the image (the image's MODEL_DIR)

Prints one PASS or FAIL line per check and exits 1 when any check failed. Only the standard library, numpy
and trainer.artifact are used: the runtime image has nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

# The image's command (Dockerfile CMD), run from its working directory.
COMMAND = ["gunicorn", "-c", "service/gunicorn.conf.py", "service:create_app()"]
USER = "app"
# Planted structure: each of these lies ever farther from "king"; fillers are random.
KING_NEIGHBOURS = ["queen", "prince", "princess"]
FILLERS = [f"filler{i:02d}" for i in range(40)]
DIM = 16
STARTUP_SECONDS = 90
STOP_SECONDS = 30

failures: list[str] = []


def check(name: str, ok: bool, detail: object = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}: {name}{f' ({detail})' if detail not in ('', None) else ''}", flush=True)
    if not ok:
        failures.append(name)
    return ok


def make_model(path: Path) -> Path:
    """A model folder of len(KING_NEIGHBOURS) + 1 + len(FILLERS) words x DIM, written by trainer.artifact.save."""
    import numpy as np
    from trainer import artifact

    rng = np.random.default_rng(0)
    king = rng.standard_normal(DIM)
    near = [king + scale * rng.standard_normal(DIM) for scale in (0.1, 0.4, 0.7)]  # cosine ~0.99, 0.93, 0.82
    words = ["king", *KING_NEIGHBOURS, *FILLERS]
    vectors = np.vstack([king, *near, rng.standard_normal((len(FILLERS), DIM))])
    counts = np.arange(len(words), 0, -1) * 10
    return artifact.save(path, words, counts, vectors, rng.standard_normal(vectors.shape) * 0.1,
                         meta={"objective": "negative-sampling", "note": "smoke-test model"})


def free_port() -> int:
    # RUN steps share the host's network here, where 8000 may be taken: ask the kernel for a free port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, object, str]:
    """(status, parsed JSON body or None, content type) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            status, body, ctype = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, body, ctype = error.code, error.read(), error.headers.get("Content-Type", "")
    try:
        return status, json.loads(body), ctype
    except ValueError:
        return status, None, ctype


def find_value(tree: object, key_part: str) -> object:
    """The first value in nested JSON whose key contains key_part (e.g. 'vocab'), or None."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key_part in key and isinstance(value, int):
                return value
        for value in tree.values():
            found = find_value(value, key_part)
            if found is not None:
                return found
    return None


def check_image() -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    check("runs as the non-root user", os.getuid() != 0 and user == USER, f"uid {os.getuid()} {user}")
    try:
        import numba  # noqa: F401
        check("import numba fails in the runtime venv", False, f"imported from {numba.__file__}")
    except ImportError:
        check("import numba fails in the runtime venv", True)
    # The project's own metadata says what the runtime must hold: its base dependencies at their pins,
    # and none of the packages that only its extras (train, test, bench) bring.
    requirements = metadata.requires("skipgram") or []
    base = {_name(r): r for r in requirements if "extra ==" not in r}
    optional = {_name(r) for r in requirements if "extra ==" in r} - set(base) - {"skipgram"}
    pinned = {name: _installed(name) for name in base}
    check("base dependencies installed at their pins",
          all(f"{name}=={have}" == base[name].split(";")[0].strip() for name, have in pinned.items()),
          ", ".join(f"{name} {have}" for name, have in pinned.items()))
    present = sorted(name for name in optional if _installed(name))
    check("no package of the extras installed", not present, present or f"none of {len(optional)}")


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def serve(baked: bool, model_dir: Path | None) -> None:
    from trainer import artifact

    env = dict(os.environ)
    if baked:
        model_dir, what = Path(env["MODEL_DIR"]), "model baked into the image"
    else:
        model_dir = make_model(model_dir or Path(tempfile.mkdtemp(prefix="smoke-")) / "model")
        env["MODEL_DIR"], what = str(model_dir), "tiny model written by trainer.artifact.save"
    try:
        vocab_size = artifact.verify(model_dir).vocab_size
    except (artifact.ModelError, OSError) as error:
        check(what, False, error)
        return
    check(what, True, f"{model_dir}: {vocab_size} words")
    port = free_port()
    env["PORT"] = str(port)
    log_path = Path(tempfile.mkdtemp(prefix="smoke-log-")) / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(COMMAND, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        healthy = wait_healthy(server, port)
        detail = f"port {port}, pid {server.pid}" if healthy else first_error(log_path.read_text(errors="replace"))
        if check("server answers /healthz", healthy, detail):
            query(server, port, vocab_size)
    finally:
        stop(server)
        log_text = log_path.read_text(errors="replace")
        check("server log shows no traceback", "Traceback" not in log_text)
        if failures:
            print("---- gunicorn log ----\n" + log_text + "---- end of log ----", flush=True)


def first_error(log_text: str) -> str:
    """The first exception line of the server's log (e.g. "ModuleNotFoundError: ..."), or its last line."""
    lines = log_text.strip().splitlines() or ["(empty log)"]
    return next((line for line in lines if re.match(r"\w+(Error|Exception)\b.*:", line)), lines[-1])


def wait_healthy(server: subprocess.Popen, port: int) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            print(f"server exited early with status {server.returncode}", flush=True)
            return False
        try:
            if get(port, "/healthz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def query(server: subprocess.Popen, port: int, vocab_size: int) -> None:
    uid = _status_field(server.pid, "Uid")
    check("server process is not root", uid is not None and uid.split()[0] != "0", f"Uid {uid}")

    status, body, ctype = get(port, "/healthz")
    check("GET /healthz -> 200 JSON", status == 200 and isinstance(body, dict), f"{status} {ctype} {body}")

    status, body, ctype = get(port, "/readyz")
    check("GET /readyz -> 200 JSON", status == 200 and isinstance(body, dict), f"{status} {ctype} {body}")
    found = find_value(body, "vocab")
    check("/readyz reports the vocabulary size", found == vocab_size, f"{found} == {vocab_size}")

    status, body, ctype = get(port, "/similar?word=king&k=3")
    check("GET /similar?word=king&k=3 -> 200 JSON", status == 200 and isinstance(body, dict), f"{status} {ctype}")
    body = body if isinstance(body, dict) else {}
    neighbours = body.get("neighbors")
    check("/similar echoes word and k", body.get("word") == "king" and body.get("k") == 3,
          {k: body.get(k) for k in ("word", "k")})
    well_formed = (isinstance(neighbours, list) and len(neighbours) == 3
                   and all(isinstance(n, dict) and isinstance(n.get("word"), str)
                           and isinstance(n.get("score"), (int, float)) for n in neighbours))
    check("/similar gives 3 neighbours of word and score", well_formed, neighbours)
    if well_formed:
        words = [n["word"] for n in neighbours]
        scores = [n["score"] for n in neighbours]
        check("/similar ranks the planted neighbours", words == KING_NEIGHBOURS, words)
        check("/similar scores descend", scores == sorted(scores, reverse=True), scores)

    status, body, ctype = get(port, "/similar?word=no-such-word&k=3")
    check("unknown word -> 404 JSON error", status == 404 and isinstance(body, dict), f"{status} {ctype} {body}")

    for path, kind in (("/?word=king", "text/html"), ("/static/explorer.js", "text/javascript")):
        status, _, ctype = get(port, path)  # the explorer page's files are package data of the image's install
        check(f"GET {path} -> 200 {kind}", status == 200 and ctype.startswith(kind), f"{status} {ctype}")

    healthcheck = os.environ.get("HEALTHCHECK_TEST", "")
    if healthcheck:  # the image's HEALTHCHECK, as read from the image by scripts/docker-test.sh
        test = json.loads(healthcheck)
        argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
        env = dict(os.environ, PORT=str(port))
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        check("the image's HEALTHCHECK passes", result.returncode == 0, result.stderr.strip()[-300:])
    check("server still running", server.poll() is None)


def _status_field(pid: int, field: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)  # what `docker stop` sends
    try:
        code = server.wait(timeout=STOP_SECONDS)
        check("server stops on SIGTERM", code == 0, f"exit status {code}")
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        check("server stops on SIGTERM", False, f"still running after {STOP_SECONDS} s: killed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baked", action="store_true", help="serve the model baked into the image")
    parser.add_argument("--model-dir", type=Path, help="where to write the tiny model (default: a temporary folder)")
    args = parser.parse_args(argv)
    check_image()
    serve(args.baked, args.model_dir)
    print(f"smoke test: {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
