"""Seeds and random generators: one seed per run, generators owned by the agent that uses them.

An agent does not reseed the process's global generators. It owns an
:class:`AgentRandomness` (a torch generator state for the CPU and for its
device, and a numpy ``Generator``), and its public methods run inside
:meth:`AgentRandomness.active`, which swaps the agent's torch state in for the
duration of the call and out again afterwards. Torch's sampling functions
(``dist.sample()``, ``torch.randperm``, weight initialisation) draw from the
global generator and cannot all be given a ``generator=`` argument, which is
why the state is swapped rather than passed. Scripts that want the old
behaviour (everything seeded globally) call :func:`seed_everything`.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np


def seed_everything(seed: int, *, deterministic_torch: bool = False) -> np.random.SeedSequence:
    """Seed Python's ``random``, numpy's global RNG and torch (CPU and CUDA).

    Returns a ``numpy.random.SeedSequence`` rooted at ``seed``; spawn children
    from it for environments and other independent streams, so that one seed
    drives a whole run. With ``deterministic_torch`` torch is asked for
    deterministic kernels (slower on GPU). Agents do not call this (they own
    their generators); scripts may.
    """
    import torch

    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic_torch:
        torch.use_deterministic_algorithms(True)
    return np.random.SeedSequence(seed)


def check_seed(seed: Any) -> int:
    """``seed`` as an int; ValueError unless it is a non-negative integer."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def derive_seed(seed: int | None, index: int) -> int | None:
    """A per-stream seed derived from ``seed`` (``None`` stays ``None``)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class AgentRandomness:
    """The random generators one agent owns: torch's (CPU, and the agent's CUDA device if any) and numpy's.

    ``with randomness.active(): ...`` runs the block with the agent's torch
    state in place of the global one and puts the global state back afterwards
    (re-entrant: a nested ``active()`` of the same object is a no-op), so two
    agents built with the same seed give the same results whatever runs
    between or around them. ``numpy`` is the agent's ``np.random.Generator``.
    """

    def __init__(self, seed: int, device=None):
        import torch

        seed = check_seed(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._cuda = self.device.type == "cuda"
        self.numpy = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        self._cpu_state = gen.get_state()
        self._cuda_state = None
        if self._cuda:
            cuda_gen = torch.Generator(device=self.device).manual_seed(seed)
            self._cuda_state = cuda_gen.get_state()
        self._depth = 0

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        import torch

        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        outer_cpu = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(self.device) if self._cuda else None
        torch.set_rng_state(self._cpu_state)
        if self._cuda:
            torch.cuda.set_rng_state(self._cuda_state, self.device)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            self._cpu_state = torch.get_rng_state()
            torch.set_rng_state(outer_cpu)
            if self._cuda:
                self._cuda_state = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(outer_cuda, self.device)

    # -- checkpoints --------------------------------------------------------------
    def state_tensors(self) -> dict[str, Any]:
        """The torch generator states as uint8 tensors (for a safetensors checkpoint)."""
        out = {"cpu": self._current_cpu_state().clone()}
        if self._cuda:
            out["cuda"] = self._current_cuda_state().clone()
        return out

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        import torch

        if "cpu" in tensors:
            self._set_cpu_state(tensors["cpu"].to("cpu", torch.uint8))
        if self._cuda and "cuda" in tensors:
            self._set_cuda_state(tensors["cuda"].to("cpu", torch.uint8))

    def numpy_state(self) -> dict[str, Any]:
        """The numpy generator's state (JSON-able)."""
        return self.numpy.bit_generator.state

    def load_numpy_state(self, state: dict[str, Any]) -> None:
        bitgen = self.numpy.bit_generator
        if state.get("bit_generator") == type(bitgen).__name__:
            bitgen.state = state

    def _current_cpu_state(self):
        import torch

        return torch.get_rng_state() if self._depth else self._cpu_state

    def _current_cuda_state(self):
        import torch

        return torch.cuda.get_rng_state(self.device) if self._depth else self._cuda_state

    def _set_cpu_state(self, state) -> None:
        import torch

        if self._depth:
            torch.set_rng_state(state)
        else:
            self._cpu_state = state

    def _set_cuda_state(self, state) -> None:
        import torch

        if self._depth:
            torch.cuda.set_rng_state(state, self.device)
        else:
            self._cuda_state = state
