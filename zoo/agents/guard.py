"""The numerical guard of the shared learner path: non-finite losses or parameters stop (or roll back) training.

Every agent's ``learn`` reports its metrics (loss terms among them) through
:meth:`zoo.agents.base.Agent.learn`'s report step; the guard checks them and
the parameters of the agent's checkpointed modules there, once per report
(one reduction per parameter tensor), so that a blow-up is caught within one
report interval whatever the agent. ``on_nonfinite``:

* ``"raise"`` (default): :class:`~zoo.errors.NumericalError` naming the agent,
  the step, the non-finite terms and the last good checkpoint;
* ``"rollback"``: restore the networks and optimizers to the last report at
  which everything was finite (kept in memory) and go on; three rollbacks in
  a row raise;
* ``"skip"``: warn and go on (for runs that recover by themselves or that
  you watch).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import TYPE_CHECKING, Any

import torch

from zoo.errors import ConfigError, NumericalError

if TYPE_CHECKING:
    from zoo.agents.base import Agent

ON_NONFINITE = ("raise", "rollback", "skip")
MAX_ROLLBACKS_IN_A_ROW = 3


class NumericalGuard:
    """Checks one ``learn()`` call's reports; see the module docstring for the policies."""

    def __init__(self, agent: "Agent", on_nonfinite: str = "raise"):
        if on_nonfinite not in ON_NONFINITE:
            raise ConfigError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
        self.agent, self.policy = agent, on_nonfinite
        self.rollbacks_in_a_row = 0
        self.rollbacks = 0
        self._good: dict[str, Any] | None = None
        if on_nonfinite == "rollback":
            self._good = self._snapshot()

    def check(self, metrics: dict[str, Any]) -> None:
        """Raise, roll back or warn if a metric or a parameter is not finite; else remember this state as good."""
        bad = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isfinite(v)]
        bad += [f"parameters of '{name}'" for name in self._nonfinite_modules()]
        if not bad:
            self.rollbacks_in_a_row = 0
            if self.policy == "rollback":
                self._good = self._snapshot()
            return
        agent = self.agent
        where = (f"{type(agent).__name__} at {agent.num_timesteps} {agent.budget_unit}: non-finite "
                 f"{', '.join(bad)}")
        last = agent.last_checkpoint
        saved = f"the last checkpoint saved is {last}" if last is not None else "no checkpoint was saved in this run"
        if self.policy == "skip":
            warnings.warn(f"{where}; going on (on_nonfinite='skip')", RuntimeWarning, stacklevel=4)
            return
        if self.policy == "rollback" and self.rollbacks_in_a_row < MAX_ROLLBACKS_IN_A_ROW:
            self._restore(self._good)
            self.rollbacks_in_a_row += 1
            self.rollbacks += 1
            warnings.warn(f"{where}; rolled back to the last finite state (rollback {self.rollbacks_in_a_row} "
                          f"of {MAX_ROLLBACKS_IN_A_ROW} in a row)", RuntimeWarning, stacklevel=4)
            return
        tried = f" after {self.rollbacks_in_a_row} rollbacks in a row" if self.policy == "rollback" else ""
        raise NumericalError(f"{where}{tried}; {saved}. Lower the learning rate (or clip gradients), check the "
                             f"rewards and observations for inf/NaN, or pass learn(..., on_nonfinite='rollback')")

    def _nonfinite_modules(self) -> list[str]:
        """The modules holding a non-finite parameter: one flag per module on the device, one sync in all."""
        device, modules = self.agent.device, self.agent.state_modules()
        flags = []
        for module in modules.values():
            tensors = [p for p in module.parameters() if p.is_floating_point()]
            finite = torch.stack([torch.isfinite(p).all() for p in tensors]).all() if tensors else torch.tensor(True)
            flags.append(finite.to(device))
        return [name for name, ok in zip(modules, torch.stack(flags).tolist() if flags else []) if not ok]

    def _snapshot(self) -> dict[str, Any]:
        agent = self.agent
        return {"modules": {k: copy.deepcopy(m.state_dict()) for k, m in agent.state_modules().items()},
                "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in agent.state_optimizers().items()}}

    def _restore(self, state: dict[str, Any]) -> None:
        agent = self.agent
        for k, m in agent.state_modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in agent.state_optimizers().items():
            o.load_state_dict(state["optimizers"][k])
