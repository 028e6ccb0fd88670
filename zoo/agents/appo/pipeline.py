"""APPO's asynchronous collection: a collector thread acting with a snapshot of the policy while the learner trains.

The thread runs a collector (:class:`~zoo.rollout.RolloutCollector` or
:class:`~zoo.rollout.DoubleBufferedCollector`, whose envs step in worker processes) with the *actor*, a copy
of the learner's network. Each finished rollout is copied into a free slot of preallocated storage and handed
to the learner through a queue; the learner gives the slot back when it has trained on it. With two slots at
most one rollout waits while the learner trains on another and the thread collects a third, so the policy
lag stays small and memory bounded.

Weights travel through a staging copy: the learner :meth:`~WeightChannel.publish` es its parameters with a
version number (its SGD step count); the thread picks them up between two policy calls
(:meth:`~WeightChannel.refresh`) and sets the collector's ``policy_version`` at the same moment, so every
stored step records exactly the version whose weights chose it.

Errors in the thread reach the learner as the original exception at its next :meth:`CollectorThread.get`;
:meth:`CollectorThread.stop` lets the rollout under way finish (the envs stay consistent) and joins the
thread, also on KeyboardInterrupt. Rollouts collected but not trained on stay queued for the next ``learn``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.rollout import Rollout

#: how often blocked waits wake up to check for a stop request or a dead thread (seconds)
_POLL_S = 0.05


def require_recurrent(rollout: Rollout) -> Rollout:
    """``rollout`` itself, checked to come from a recurrent collector (APPO replays its stored states)."""
    if rollout.states is None or rollout.next_episode_start is None:
        raise ValueError("APPO trains on recurrent rollouts: build the collector with initial_state=...")
    return rollout


class WeightChannel:
    """Learner -> actor weights: ``publish`` (learner thread) stages a copy, ``refresh`` (collector thread)
    installs it into the actor between policy calls."""

    def __init__(self, learner: nn.Module, actor: nn.Module):
        self.learner, self.actor = learner, actor
        self._lock = threading.Lock()
        with torch.no_grad():
            self._staged = [t.detach().clone() for t in self._tensors(learner)]
        self._staged_version = -1
        self.actor_version = -1

    @staticmethod
    def _tensors(module: nn.Module) -> list[torch.Tensor]:
        return list(module.parameters()) + list(module.buffers())

    @torch.no_grad()
    def publish(self, version: int) -> None:
        """Stage the learner's current weights as ``version``."""
        with self._lock:
            for staged, tensor in zip(self._staged, self._tensors(self.learner)):
                staged.copy_(tensor)
            self._staged_version = version

    @torch.no_grad()
    def install(self, version: int) -> None:
        """Copy the learner's weights straight into the actor (no thread running); both are at ``version``."""
        for target, tensor in zip(self._tensors(self.actor), self._tensors(self.learner)):
            target.copy_(tensor)
        self.publish(version)
        self.actor_version = version

    @torch.no_grad()
    def refresh(self) -> bool:
        """Install the staged weights in the actor if they are newer; True if it did."""
        if self._staged_version == self.actor_version:  # an int read: no lock needed to find nothing new
            return False
        with self._lock:
            for target, staged in zip(self._tensors(self.actor), self._staged):
                target.copy_(staged)
            self.actor_version = self._staged_version
        return True


class CollectorThread:
    """Collects rollouts in a background thread into ``num_slots`` preallocated slots (see the module docstring).

    ``collect()`` (called in the thread) returns a finished :class:`~zoo.rollout.Rollout` and a dict of
    statistics to pass along (episode statistics, timings); ``run(count)`` starts collecting ``count`` rollouts
    (fewer if some are still queued from before); ``get()`` returns ``(slot, batch, info)`` for the next one;
    ``release(slot)`` gives its storage back.
    """

    def __init__(self, collect: Callable[[], tuple[Any, dict]], num_slots: int = 2):
        if num_slots < 1:
            raise ValueError(f"num_slots must be positive, got {num_slots}")
        self._collect = collect
        self._slots: list[Rollout | None] = [None] * num_slots
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(num_slots):
            self._free.put(i)
        self._full: queue.Queue[tuple] = queue.Queue()
        self._taken: set[int] = set()  # slots handed to the learner and not given back yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queued(self) -> int:
        """Rollouts collected and not yet handed to the learner."""
        return self._full.qsize()

    def run(self, count: int) -> None:
        """Start the thread so that ``count`` rollouts are ready in all (those queued from before count)."""
        if self.running:
            raise RuntimeError("the collector thread is already running")
        self._stop.clear()
        todo = count - self.queued
        if todo > 0:
            self._thread = threading.Thread(target=self._loop, args=(todo,), name="appo-collector", daemon=True)
            self._thread.start()

    def _loop(self, count: int) -> None:
        try:
            for _ in range(count):
                if self._stop.is_set():
                    return
                rollout, info = self._collect()
                slot = self._wait_free()
                if slot is None:  # stopped with every slot taken: the learner is gone, drop this rollout
                    return
                if self._slots[slot] is None:
                    self._slots[slot] = require_recurrent(rollout).clone()
                else:
                    self._slots[slot].copy_(rollout)
                self._full.put((slot, info))
        except BaseException as exc:  # noqa: BLE001  (handed to the learner, which raises it)
            self._full.put((None, exc))

    def _wait_free(self) -> int | None:
        """A free slot; None once a stop is requested and none is free (no release comes after a stop)."""
        while True:
            try:
                return self._free.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return None

    def get(self) -> tuple[int, Rollout, dict]:
        """The next collected rollout: ``(slot, batch, info)``; raises the thread's error if it failed."""
        waited = time.perf_counter()
        while True:
            try:
                slot, info = self._full.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self.running and self._full.empty():
                    raise RuntimeError("APPO's collector thread stopped without handing over a rollout (it was "
                                       "asked for fewer than the learner takes)") from None
        if slot is None:
            raise info
        self._taken.add(slot)
        info = dict(info, wait_s=time.perf_counter() - waited)
        return slot, self._slots[slot], info

    def release(self, slot: int) -> None:
        """Give a slot back once the learner is done with it (again: a no-op)."""
        if slot in self._taken:
            self._taken.discard(slot)
            self._free.put(slot)

    def stop(self) -> None:
        """Ask the thread to stop after the rollout under way and wait for it (the envs stay consistent).

        Errors the thread hit after the learner's last ``get`` are dropped (the caller is already leaving)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            while thread.is_alive():
                thread.join(timeout=_POLL_S)
            self._thread = None
        for slot in list(self._taken):  # a slot the learner could not give back (interrupted in between)
            self.release(slot)
        kept = []
        while not self._full.empty():  # drop error reports; keep collected rollouts for the next run
            item = self._full.get()
            if item[0] is not None:
                kept.append(item)
        for item in kept:
            self._full.put(item)
