"""One environment interface over every suite: ``make_env(id, num_envs, device, seed)`` -> ``VecEnv``.

Every batched env, numeric (``VecEnv``) or text (``zoo.envs.text.TextVecEnv``), implements the
``BatchedEnv`` protocol (reset/step, step_async/step_wait, spaces, ``env_id``, ``make_kwargs``).

Ids are ``suite/task``: ``gym/<gymnasium id>``, ``dmc/<domain>-<task>``,
``metaworld/<task>-v3``, ``nethack/<task>``, ``minatar/<game>``,
``torch/<task>``. ``list_envs()`` lists them.
"""

from zoo.envs import suites as _suites  # noqa: F401  (registers the built-in suites)
from zoo.envs.host import HostVecEnv
from zoo.envs.registry import Suite, list_envs, make_env, make_single_env, register_suite, resolve, suites
from zoo.envs.torch_envs import CartPoleTorch, TorchVecEnv
from zoo.envs.vec import BatchedEnv, VecEnv

__all__ = ["make_env", "make_single_env", "list_envs", "BatchedEnv", "VecEnv", "HostVecEnv", "TorchVecEnv",
           "CartPoleTorch", "Suite", "register_suite", "resolve", "suites"]
