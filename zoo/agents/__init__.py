"""Agents: one module per algorithm plus shared base learners.

Every agent is built as ``Name(env, *, seed=0, device="auto", data=None, **hyperparameters)``
(``data=``: an offline agent's dataset or its path) and offers ``learn``, ``act``,
``evaluate``, ``save`` and ``Name.load(path, data=None)``.
``list_agents()`` names the registered ones.
"""

from __future__ import annotations

_AGENTS: dict[str, type] = {}


def register_agent(cls: type) -> type:
    """Class decorator: make an agent visible to ``list_agents`` and the CLI."""
    _AGENTS[cls.__name__] = cls
    return cls


def list_agents() -> list[str]:
    """Names of the registered agents."""
    return sorted(_AGENTS)


def get_agent(name: str) -> type:
    """The agent class called ``name`` (case-insensitive), with a clear error naming the known ones."""
    import difflib

    from zoo.errors import ConfigError

    by_lower = {k.lower(): v for k, v in _AGENTS.items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name, list(_AGENTS), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    known = ", ".join(list_agents()) or "none yet"
    raise ConfigError(f"unknown agent {name!r}; registered agents: {known}.{hint}")


__all__ = ["register_agent", "list_agents", "get_agent"]

# The agents register themselves on import (kept last: they import register_agent from here).
from zoo.agents.base import Agent, load_agent  # noqa: E402
from zoo.agents.appo import APPO  # noqa: E402
from zoo.agents.archer.agent import CHAI, ArCHer, FilteredBC, OfflineArCHer  # noqa: E402
from zoo.agents.archer.token_ppo import TokenPPO  # noqa: E402
from zoo.agents.cpl.agent import CPL, SFT  # noqa: E402
from zoo.agents.cpl.piql import PIQL  # noqa: E402
from zoo.agents.dqn import DQN  # noqa: E402
from zoo.agents.gbrl import GBRL  # noqa: E402
from zoo.agents.oni import ONI  # noqa: E402
from zoo.agents.parl.agent import PARL  # noqa: E402
from zoo.agents.parl.pebble import PEBBLE  # noqa: E402
from zoo.agents.ppo import PPO  # noqa: E402
from zoo.agents.sac import SAC  # noqa: E402

__all__ += ["Agent", "load_agent", "APPO", "ONI", "PARL", "PEBBLE", "ArCHer", "CHAI", "FilteredBC", "OfflineArCHer", "TokenPPO", "PPO", "GBRL", "SAC", "DQN", "CPL", "SFT", "PIQL"]
