"""Skip-gram trainer: corpus -> vocabulary -> numba kernels -> model folder.

Importing this package is cheap on purpose: ``from trainer import artifact`` must not pull in numba.
"""
