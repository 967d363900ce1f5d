"""`python -m service.precompute [MODEL]`: prepare a model's derived data before the workers start.

gunicorn.conf.py runs it (with every core) before forking the workers, which then only map what it wrote
(service.derived). It can also be run by hand beforehand. It removes the cache entries left by earlier
contents of the same model folder, and prints the digest of the contents it prepared on standard output.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from service import derived, settings
from trainer import artifact
from trainer.artifact import ModelError

log = logging.getLogger("service.precompute")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the derived data (word table, unit vectors, index, "
                                                 "tables) of a model folder, with the service's settings "
                                                 "(MODEL_DIR, INDEX, SKIPGRAM_*).")
    parser.add_argument("model", nargs="?", help="model folder (default: the MODEL_DIR setting)")
    parser.add_argument("--threads", type=int, default=settings.cores(),
                        help="threads for building (default: every core this process may use)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[precompute] %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    try:
        config = settings.load({"MODEL_DIR": args.model} if args.model else None)
        model = artifact.load(config["MODEL_DIR"], check_values=False)  # prepare() checks the values
        prepared = derived.prepare(model, config, threads=max(1, args.threads))
    except (settings.SettingsError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    derived.remove_stale(model, config["CACHE_DIR"])
    log.info("%s (%s) ready in %.1f s: %s index%s%s", model.path, model.digest, time.perf_counter() - started,
             prepared.plan.kind, ", similar table" if prepared.similar else "",
             ", context table" if prepared.context else "")
    print(model.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
