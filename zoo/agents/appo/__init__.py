"""APPO: asynchronous PPO with V-trace and a recurrent core (sample-factory's learner, as the ONI reference runs it).

``agent`` holds the learner and its hooks, ``config`` the hyperparameters, ``policy`` the recurrent
actor-critic, ``batch`` the rollout storage the learner trains on, ``pipeline`` the collector thread and the
weight hand-over, ``envs`` the double-buffered env halves.
"""

from zoo.agents.appo.agent import APPO, appo_vtrace_targets
from zoo.agents.appo.config import APPOConfig
from zoo.agents.appo.envs import EnvHalves
from zoo.agents.appo.policy import RecurrentActorCritic

__all__ = ["APPO", "APPOConfig", "EnvHalves", "RecurrentActorCritic", "appo_vtrace_targets"]
