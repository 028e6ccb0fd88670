"""zoo: reinforcement-learning and agent algorithms from recent papers on one interface.

The heavy parts (torch, the environment suites) are imported lazily, so that
``import zoo`` is cheap and worker processes that only step environments do not
pay for them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["make_env", "list_envs", "seed_everything", "__version__"]


def __getattr__(name: str):
    if name in ("make_env", "list_envs"):
        from zoo import envs

        return getattr(envs, name)
    if name == "seed_everything":
        from zoo.utils.seeding import seed_everything

        return seed_everything
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
