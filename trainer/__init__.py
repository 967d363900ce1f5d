"""Skip-gram trainer: corpus -> vocabulary -> numba kernels -> model folder.

Importing this package is cheap on purpose: ``from trainer import artifact`` must not pull in numba.
"""
import os


def available_cores() -> int:
    """The cores this process may use (os.sched_getaffinity does not exist on macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
