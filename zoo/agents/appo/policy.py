"""APPO's recurrent actor-critic: observation encoder -> MLP -> GRU/LSTM core -> policy and value heads.

One shared network (sample-factory's ``actor_critic_share_weights``): the encoder is
:func:`zoo.nets.make_encoder`'s for the observation space (the NetHack encoder for NetHack's dict
observations), the core a :class:`~zoo.recurrent.RecurrentCore`, the action side an
:class:`~zoo.agents.on_policy.ActionHead` (categorical, or a diagonal Gaussian with a state-independent
log-std). ``step`` acts on one batch; ``sequence`` replays ``(L, B)`` sequences for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.agents.on_policy import ActionHead
from zoo.nets import make_encoder, mlp
from zoo.recurrent import RecurrentCore, State
from zoo.rollout import Obs, PolicyStep


def _flat(obs: Obs) -> tuple[Obs, tuple[int, int]]:
    """``(L, B, ...)`` observations (a tensor or a dict of them) as ``(L * B, ...)``, and ``(L, B)``."""
    first = next(iter(obs.values())) if isinstance(obs, dict) else obs
    lead = tuple(first.shape[:2])
    if isinstance(obs, dict):
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in obs.items()}, lead
    return obs.reshape(-1, *obs.shape[2:]), lead


class RecurrentActorCritic(ActionHead):
    """``step(obs, state, episode_start) -> (distribution, value, next_state)`` on a batch and ``sequence`` on
    ``(L, B)`` sequences; the trunk, core and heads start orthogonal (gain 1, zero biases), as sample-factory's."""

    def __init__(self, observation_space, action_space, hidden: Sequence[int] = (512,), core_size: int = 512,
                 cell: str = "gru", activation: str = "elu", log_std_init: float = 0.0):
        super().__init__()
        self.encoder = make_encoder(observation_space)
        self.trunk = mlp(self.encoder.out_dim, hidden, None, activation) if hidden else nn.Identity()
        width = hidden[-1] if hidden else self.encoder.out_dim
        self.core = RecurrentCore(width, core_size, cell)
        out = self.init_action_space(action_space, log_std_init, "APPO")
        self.actor = nn.Linear(core_size, out)
        self.critic = nn.Linear(core_size, 1)
        for module in (self.trunk, self.core, self.actor, self.critic):
            for name, param in module.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(param)
                elif param.dim() >= 2:
                    nn.init.orthogonal_(param, gain=1.0)

    def initial_state(self, num_envs: int, device: torch.device | str | None = None) -> State:
        """The zero recurrent state of ``num_envs`` envs."""
        return self.core.initial_state(num_envs, device)

    def features(self, obs: Obs) -> torch.Tensor:
        return self.trunk(self.encoder(obs))

    def heads(self, h: torch.Tensor) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        return self.action_distribution(self.actor(h)), self.critic(h).squeeze(-1)

    def step(self, obs: Obs, state: State, episode_start: torch.Tensor | None = None
             ) -> tuple[torch.distributions.Distribution, torch.Tensor, State]:
        """One step on a batch: the state is zeroed where ``episode_start`` before the core runs."""
        h, next_state = self.core.step(self.features(obs), state, episode_start)
        dist, value = self.heads(h)
        return dist, value, next_state

    def sequence(self, obs: Obs, initial_state: State, episode_starts: torch.Tensor
                 ) -> tuple[torch.distributions.Distribution, torch.Tensor, State]:
        """Replay ``(L, B)`` steps from ``initial_state`` (the encoder and heads run on all steps at once)."""
        flat, (L, B) = _flat(obs)
        x = self.features(flat).reshape(L, B, -1)
        h, last = self.core.sequence(x, initial_state, episode_starts)
        dist, value = self.heads(h)
        return dist, value, last

    def sample(self, dist: torch.distributions.Distribution, generator: torch.Generator | None) -> torch.Tensor:
        """A sample of ``dist`` drawn from ``generator`` (the collector's own stream; None: the global one)."""
        if generator is None:
            return dist.sample()
        if self.discrete:
            probs = dist.probs
            return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(
                probs.shape[:-1])
        mean = dist.mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + self.log_std.exp() * noise

    def act(self, obs: Obs, state: State, episode_start: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False) -> PolicyStep:
        """What a recurrent collector calls: a sampled (or modal) action, its log-prob, the value, the next state."""
        dist, value, next_state = self.step(obs, state, episode_start)
        action = self.mode(dist) if deterministic else self.sample(dist, generator)
        return PolicyStep(action, dist.log_prob(action), value, self.env_action(action), next_state)

    def value(self, obs: Obs, state: State, episode_start: torch.Tensor | None = None) -> torch.Tensor:
        """``V(obs)`` after one step of the core from ``state`` (a recurrent collector's ``value_fn``)."""
        return self.step(obs, state, episode_start)[1]

