"""One seed for Python, numpy, torch and the environments."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int, *, deterministic_torch: bool = False) -> np.random.SeedSequence:
    """Seed Python's ``random``, numpy's global RNG and torch (CPU and CUDA).

    Returns a ``numpy.random.SeedSequence`` rooted at ``seed``; spawn children
    from it for environments and other independent streams, so that one seed
    drives a whole run. With ``deterministic_torch`` torch is asked for
    deterministic kernels (slower on GPU).
    """
    import torch

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic_torch:
        torch.use_deterministic_algorithms(True)
    return np.random.SeedSequence(seed)


def derive_seed(seed: int | None, index: int) -> int | None:
    """A per-stream seed derived from ``seed`` (``None`` stays ``None``)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])
