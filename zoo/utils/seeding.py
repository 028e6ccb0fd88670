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


#: the installed generator owners, innermost last: ``(owner, the state that was live before the outermost
#: owner was installed)``; the live torch state belongs to the last owner (single-threaded use)
_INSTALLED: list[tuple["AgentRandomness", Any]] = []


class AgentRandomness:
    """The random generators one agent owns: torch's (CPU, and the agent's CUDA device if any) and numpy's.

    ``with randomness.active(): ...`` runs the block with the agent's torch
    state in place of whatever was live, and puts that back afterwards. Scopes
    nest across agents (an outer agent driving inner ones, as PARL's outer
    loop or a population does): each draws from its own stream, and a nested
    ``active()`` of the owner already installed is a no-op. ``suspended()``
    hands the generator back to whoever was live before (user callbacks run
    so), ``isolated(seed)`` runs a block on a fresh stream that leaves this one
    untouched (evaluation). ``numpy`` is the agent's ``np.random.Generator``.
    """

    def __init__(self, seed: int, device=None):
        import torch

        seed = check_seed(seed)
        self.seed = seed
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._cuda = self.device.type == "cuda"
        self.numpy = np.random.default_rng(seed)
        self._cpu_state = torch.Generator().manual_seed(seed).get_state()
        self._cuda_state = torch.Generator(device=self.device).manual_seed(seed).get_state() if self._cuda else None

    # -- installing and removing the torch state -------------------------------------
    def _installed(self) -> bool:
        return bool(_INSTALLED) and _INSTALLED[-1][0] is self

    def _live(self) -> tuple:
        import torch

        return torch.get_rng_state(), (torch.cuda.get_rng_state(self.device) if self._cuda else None)

    def _install(self, state: tuple | None = None) -> None:
        import torch

        cpu, cuda = state if state is not None else (self._cpu_state, self._cuda_state)
        torch.set_rng_state(cpu)
        if self._cuda and cuda is not None:
            torch.cuda.set_rng_state(cuda, self.device)

    def _keep(self, state: tuple) -> None:
        self._cpu_state, cuda = state
        if self._cuda:
            self._cuda_state = cuda

    def _hand_back(self, outer) -> None:
        """Keep the live state as this owner's, then install the owner below it (or ``outer``, the process's)."""
        self._keep(self._live())
        if _INSTALLED:
            _INSTALLED[-1][0]._install()
        else:
            self._install(outer)

    def _current(self) -> tuple:
        """This owner's state as it is now (live while installed)."""
        return self._live() if self._installed() else (self._cpu_state, self._cuda_state)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if self._installed():
            yield
            return
        live = self._live()
        if _INSTALLED:
            _INSTALLED[-1][0]._keep(live)  # the live state is the current owner's: it keeps it
            outer = None
        else:
            outer = live  # the process's own state, put back when the outermost scope ends
        self._install()
        _INSTALLED.append((self, outer))
        try:
            yield
        finally:
            _, outer = _INSTALLED.pop()
            self._hand_back(outer)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Run the block with the generator state that was live before this owner's ``active()``."""
        if not self._installed():
            yield
            return
        _, outer = _INSTALLED.pop()
        self._hand_back(outer)
        try:
            yield
        finally:
            live = self._live()
            if _INSTALLED:
                _INSTALLED[-1][0]._keep(live)
            else:
                outer = live
            self._install()
            _INSTALLED.append((self, outer))

    def isolated(self, seed: int):
        """A scope on a fresh stream seeded with ``seed`` (this owner's stream is not drawn from)."""
        return AgentRandomness(seed, self.device).active()

    # -- checkpoints --------------------------------------------------------------
    def state_tensors(self) -> dict[str, Any]:
        """The torch generator states as uint8 tensors (for a safetensors checkpoint)."""
        cpu, cuda = self._current()
        out = {"cpu": cpu.clone()}
        if self._cuda:
            out["cuda"] = cuda.clone()
        return out

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        import torch

        cpu, cuda = self._current()
        if "cpu" in tensors:
            cpu = tensors["cpu"].to("cpu", torch.uint8)
        if self._cuda and "cuda" in tensors:
            cuda = tensors["cuda"].to("cpu", torch.uint8)
        if self._installed():
            self._install((cpu, cuda))
        else:
            self._keep((cpu, cuda))

    def numpy_state(self) -> dict[str, Any]:
        """The numpy generator's state (JSON-able)."""
        return self.numpy.bit_generator.state

    def load_numpy_state(self, state: dict[str, Any]) -> None:
        bitgen = self.numpy.bit_generator
        if state.get("bit_generator") == type(bitgen).__name__:
            bitgen.state = state
