"""APPO (sample-factory's asynchronous PPO, Petrenko et al., 2020) with V-trace targets (Espeholt et al., 2018).

The learner ONI (Zheng et al., 2024) runs on: PPO's clipped objective on V-trace targets and advantages, a
recurrent actor-critic trained on whole sequences, and collection that overlaps learning (see
:mod:`zoo.agents.appo.pipeline`). The losses are pure functions in :mod:`zoo.losses`.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from zoo.agents import register_agent
from zoo.agents.appo.config import APPOConfig, check_batches
from zoo.agents.appo.envs import EnvHalves, is_host_simulated, make_training_env
from zoo.agents.appo.pipeline import CollectorThread, WeightChannel, require_recurrent
from zoo.agents.appo.policy import RecurrentActorCritic
from zoo.agents.base import Agent, with_own_randomness
from zoo.envs import make_env
from zoo.envs.vec import BatchedEnv, VecEnv
from zoo.errors import ConfigError
from zoo.losses import appo_policy_loss, appo_value_loss, clamped_ratio, normalize_advantages_floored
from zoo.nets import adam
from zoo.recurrent import State, make_chunks, state_index
from zoo.returns import vtrace
from zoo.rollout import DoubleBufferedCollector, Obs, PolicyStep, Rollout, RolloutCollector, evaluate_policy


def appo_vtrace_targets(log_ratio: torch.Tensor, rewards: torch.Tensor, values: torch.Tensor,
                        terminated: torch.Tensor, truncated: torch.Tensor, bootstrap_values: torch.Tensor,
                        last_values: torch.Tensor, gamma: float, rho_bar: float = 1.0, c_bar: float = 1.0,
                        ratio_min: float = 0.05, ratio_max: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """APPO's value targets and policy-gradient advantages: V-trace (Espeholt et al., 2018, eq. 1 and sec. 4.2)
    on the clamped ratio ``clip(pi / mu, ratio_min, ratio_max)`` (:func:`zoo.losses.clamped_ratio`), so that
    ``rho_t = min(rho_bar, ratio_t)`` and ``c_t = min(c_bar, ratio_t)``; ``(T, N)`` tensors, ``last_values``
    ``(N,)``: V of the observation after the last step. Returns ``(vs, pg_advantages)`` (no gradient)."""
    with torch.no_grad():
        log_rhos = clamped_ratio(log_ratio.detach(), ratio_min, ratio_max).log()
        return vtrace(log_rhos, rewards.detach(), values.detach(), terminated, truncated, bootstrap_values.detach(),
                      last_values.detach(), gamma, rho_bar, c_bar)


@register_agent
class APPO(Agent):
    """Asynchronous PPO with V-trace and a recurrent core (``zoo.agents.APPO``).

    Envs step in worker processes, double-buffered, while a collector thread acts with a copy of the policy
    and the learner trains on the previous rollout; ``synchronous=True`` collects and learns in turn (policy
    lag 0, reproducible). Each report logs ``policy_lag_mean`` / ``policy_lag_max`` (the learner's version,
    its SGD step count, minus the version that chose each step of the rollout), ``sps`` and the losses.
    ``act(obs)`` acts from a fresh recurrent state; :meth:`act_recurrent` carries the state.

    Hooks for agents built on APPO (ONI); each runs in the learner's thread:

    * ``on_rollout(rollout)``: a rollout (:class:`~zoo.rollout.Rollout`, ``(T, N)``) arrived
      and is about to be trained on. Per-step tensors put in ``rollout.extras[name]`` (``(T, N, ...)``) travel
      with every minibatch of it. Default: nothing.
    * ``training_rewards(batch) -> (T, B) tensor``: the rewards V-trace uses, called under ``torch.no_grad()``
      at every SGD step on the minibatch trained (a ``Rollout`` of ``B`` env columns: ``obs`` (dict
      observations too), ``rewards`` (the env's), ``terminated``, ``truncated``, ``episode_starts``,
      ``extras``, ...). Default: ``clip(reward_scale * rewards, +-reward_clip)``.
    * ``log_metrics() -> dict[str, float]``: merged into each update's report. Default: empty.
    * Checkpoints: extend ``state_modules()`` / ``state_optimizers()`` (networks and optimizers, in every
      checkpoint), ``extra_state()`` (JSON-able counters; keys are restored as attributes) and
      ``training_state()`` / ``load_training_state()`` (tensors and scalars of a training checkpoint), each
      with ``super()``'s entries kept.
    """

    config_class = APPOConfig
    config: APPOConfig
    budget_unit = "env steps"

    # -- construction --------------------------------------------------------------
    def _make_env(self, env: str | VecEnv) -> VecEnv:
        if isinstance(env, str):
            c = self.config
            env = make_training_env(env, c.num_envs, self.device, self.seed, double_buffer=c.double_buffer,
                                    vectorization=c.vectorization, num_workers=c.num_workers)
        return super()._make_env(env)

    def _build(self) -> None:
        c = self.config
        check_batches(c, self.env.num_envs)  # the env passed in may have another num_envs than the config
        self.policy = RecurrentActorCritic(self.env.single_observation_space, self.env.single_action_space,
                                           c.hidden, c.core_size, c.cell, c.activation, c.log_std_init
                                           ).to(self.device)
        self.optimizer = adam(self.policy.parameters(), lr=c.learning_rate, eps=c.adam_eps)
        #: the learner's version: SGD steps taken (what a rollout's ``policy_versions`` are compared with)
        self.policy_version = 0
        initial_state = self._initial_state
        if isinstance(self.env, EnvHalves):
            self.collector = DoubleBufferedCollector(self.env.halves, c.rollout, initial_state=initial_state)
        else:
            self.collector = RolloutCollector(self.env, c.rollout, initial_state=initial_state)
        # actions are drawn from a stream of the collector's own (the learner's draws stay the agent's)
        self._sampler = torch.Generator(device=self.device)
        self._sampler.manual_seed(int(np.random.SeedSequence([self.seed, 0xA990]).generate_state(1)[0]))
        self._stats_state: dict | None = None
        self._actor: RecurrentActorCritic | None = None
        if not c.synchronous:
            self._actor = copy.deepcopy(self.policy).requires_grad_(False)
            self._weights = WeightChannel(self.policy, self._actor)
            self._pipeline = CollectorThread(self._collect_in_thread)

    def _initial_state(self, num_envs: int) -> State:
        return self.policy.initial_state(num_envs, self.device)

    def close(self) -> None:
        """Stop the collector thread (if one runs) and close the envs."""
        if self._actor is not None:
            self._pipeline.stop()
        self.env.close()

    # -- hooks -----------------------------------------------------------------------
    def on_rollout(self, rollout: Rollout) -> None:
        """A rollout arrived and is about to be trained on (see the class docstring)."""

    def training_rewards(self, batch: Rollout) -> torch.Tensor:
        """The ``(T, B)`` rewards V-trace uses for ``batch``: ``clip(reward_scale * r, +-reward_clip)``."""
        c = self.config
        rewards = batch.rewards * c.reward_scale
        return rewards if c.reward_clip is None else rewards.clamp(-c.reward_clip, c.reward_clip)

    def log_metrics(self) -> dict[str, float]:
        """Extra metrics merged into each update's report."""
        return {}

    # -- checkpoints -------------------------------------------------------------------
    def state_modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def extra_state(self) -> dict:
        return {"policy_version": self.policy_version}

    def training_state(self) -> dict:
        """The window of finished episodes behind ``return_mean`` and the action sampler's stream."""
        collecting = self._actor is not None and self._pipeline.running
        stats = self._stats_state if collecting and self._stats_state is not None else \
            self.collector.stats.state_dict()
        return {"episode_stats": stats, "sampler": self._sampler.get_state()}

    def load_training_state(self, state: dict) -> None:
        self.collector.stats.load_state_dict(state["episode_stats"])
        if "sampler" in state:
            self._sampler.set_state(torch.as_tensor(state["sampler"]).to("cpu", torch.uint8))

    # -- acting ------------------------------------------------------------------------
    def _acting(self, module: RecurrentActorCritic) -> Callable[..., PolicyStep]:
        return lambda obs, state, start: module.act(obs, state, start, self._sampler)

    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        return self._act_from(obs, None, None, deterministic)[0]

    def _act_from(self, obs: Obs, state: State | None, episode_start: torch.Tensor | None,
                  deterministic: bool) -> tuple[torch.Tensor, State]:
        n = next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0]
        if state is None:
            state = self.policy.initial_state(n, self.device)
        dist, _, next_state = self.policy.step(obs, state, episode_start)
        action = self.policy.mode(dist) if deterministic else dist.sample()
        return self.policy.env_action(action), next_state

    @with_own_randomness
    @torch.no_grad()
    def act_recurrent(self, obs: Obs, state: State | None = None, episode_start: torch.Tensor | None = None,
                      deterministic: bool = False) -> tuple[torch.Tensor, State]:
        """Actions and the next recurrent state (``state`` None: a fresh one; ``episode_start`` (bool, one per
        row) resets the state of those rows first)."""
        if isinstance(obs, dict):
            obs = {k: torch.as_tensor(v, device=self.device) for k, v in obs.items()}
        else:
            obs = torch.as_tensor(obs, device=self.device)
        self._check_batch(obs)
        if episode_start is not None:
            episode_start = torch.as_tensor(episode_start, dtype=torch.bool, device=self.device)
        return self._act_from(obs, state, episode_start, deterministic)

    def evaluate(self, n_episodes: int = 10, deterministic: bool | None = None, env: BatchedEnv | None = None,
                 seed: int | None = None) -> dict[str, float]:
        """As :meth:`Agent.evaluate <zoo.agents.base.Agent.evaluate>`, with the recurrent state carried over each
        episode; ``deterministic`` None: the config's ``deterministic_eval`` (False on NetHack and MiniHack)."""
        if deterministic is None:
            deterministic = self.config.deterministic_eval
        if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
            raise ConfigError(f"evaluate() needs a positive number of episodes, got n_episodes={n_episodes!r}")
        seed = self.seed + 1_000_003 if seed is None else seed
        own_env = env is None
        if own_env:
            env = self.evaluation_env(n_episodes)

        def policy(obs, state, start):
            action, next_state = self._act_from(obs, state, start, deterministic)
            return PolicyStep(action, state=next_state)

        try:
            with self.randomness.isolated(seed):
                return evaluate_policy(env, policy, n_episodes, seed=seed, initial_state=self._initial_state)
        finally:
            if own_env:
                env.close()

    def evaluation_env(self, n_episodes: int) -> BatchedEnv:
        """A fresh env like the training one (at most 8 copies, stepped in-process)."""
        if self.env_id is None:
            raise ConfigError("evaluate() needs env= when the agent was built from a VecEnv without an id")
        kwargs = dict(self.env.make_kwargs)
        if is_host_simulated(self.env_id):
            kwargs["vectorization"] = "sync"
        return make_env(self.env_id, num_envs=min(n_episodes, 8), device=self.device, **kwargs)

    # -- training ------------------------------------------------------------------------
    def _rollout_size(self) -> int:
        return self.config.rollout * self.env.num_envs

    def remaining_steps(self, total_steps: int) -> int:
        """The budget left to reach what ``learn(total_steps)`` from scratch runs: whole rollouts, at least one."""
        size = self._rollout_size()
        return max(0, max(1, total_steps // size) * size - self.num_timesteps)

    def default_schedule_steps(self, total_steps: int) -> int:
        size = self._rollout_size()
        return self.num_timesteps + max(1, total_steps // size) * size

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        size = self._rollout_size()
        if total_steps < size:
            warnings.warn(f"APPO learns in whole rollouts of num_envs x rollout = {size} env steps: "
                          f"learn({total_steps}) runs one rollout, {size} steps", stacklevel=3)
        count = max(1, total_steps // size)
        if self.config.synchronous:
            for _ in range(count):
                if not report(self._train_on(*self._collect_here())):
                    break
            return
        self._weights.install(self.policy_version)  # the actor starts from the learner's weights (also after a load)
        self.collector.policy_version = self.policy_version
        pipeline = self._pipeline
        pipeline.run(count)
        try:
            for _ in range(count):
                slot, batch, info = pipeline.get()
                try:
                    metrics = self._train_on(batch, info)
                finally:
                    pipeline.release(slot)
                if not report(metrics):
                    break
                self._weights.publish(self.policy_version)  # after the report: its guard may roll weights back
        finally:
            pipeline.stop()

    def _collect_here(self) -> tuple[Rollout, dict]:
        """Synchronous collection with the learner's own network."""
        start = time.perf_counter()
        self.collector.policy_version = self.policy_version
        rollout = self.collector.collect(self._acting(self.policy), value_fn=self.policy.value)
        return require_recurrent(rollout), {"collect_s": time.perf_counter() - start, "wait_s": 0.0,
                                                    "stats": self.collector.stats.summary()}

    def _collect_in_thread(self):
        """One rollout in the collector thread, with the actor; picks up new weights between policy calls."""
        actor, weights, collector = self._actor, self._weights, self.collector
        act = self._acting(actor)

        def policy(obs, state, start):
            step = act(obs, state, start)
            if weights.refresh():  # the next step records the version whose weights choose it
                collector.policy_version = weights.actor_version
            return step

        start = time.perf_counter()
        rollout = collector.collect(policy, value_fn=actor.value)
        return rollout, {"collect_s": time.perf_counter() - start, "stats": collector.stats.summary(),
                         "stats_state": collector.stats.state_dict()}

    def _train_on(self, batch: Rollout, info: dict) -> dict[str, float]:
        self.num_timesteps += batch.num_steps * batch.num_envs
        if "stats_state" in info:
            self._stats_state = info["stats_state"]
        metrics = self.update(batch)
        metrics.update(info["stats"])
        metrics["collect_s"] = info["collect_s"]
        metrics["learner_wait_s"] = info["wait_s"]
        metrics.update({k: float(v) for k, v in self.log_metrics().items()})
        return metrics

    def update(self, batch: Rollout) -> dict[str, float]:
        """Train on one rollout: ``num_epochs`` passes over minibatches of ``batch_size`` transitions (whole env
        columns), one SGD step each; ``on_rollout`` runs first."""
        c = self.config
        self.on_rollout(batch)
        batch.check_extras()
        lag = (self.policy_version - batch.policy_versions).float()
        columns = batch.num_envs
        per_batch = c.batch_size // c.rollout
        num_batches = columns // per_batch
        totals: dict[str, torch.Tensor] = {}
        steps = 0
        for _ in range(c.num_epochs):
            order = torch.randperm(columns, device=self.device) if num_batches > 1 else None
            for k in range(num_batches):
                mb = batch if order is None else batch.env_columns(order[k * per_batch:(k + 1) * per_batch])
                for key, value in self.sgd_step(mb).items():
                    totals[key] = totals.get(key, 0.0) + value
                steps += 1
        metrics = {k: float(v) / steps for k, v in totals.items()}
        metrics.update(policy_lag_mean=float(lag.mean()), policy_lag_max=float(lag.max()),
                       policy_version=float(self.policy_version))
        return metrics

    def sgd_step(self, mb: Rollout) -> dict[str, torch.Tensor]:
        """One gradient step on a minibatch of whole env columns: replay the sequences, V-trace, the losses."""
        c = self.config
        chunks = make_chunks(mb.states, mb.episode_starts, c.recurrence)
        dist, values, last_state = self.policy.sequence(chunks.split(mb.obs), chunks.initial_state,
                                                        chunks.episode_starts)
        log_prob = chunks.merge(dist.log_prob(chunks.split(mb.actions)))
        values = chunks.merge(values)
        entropy = dist.entropy().mean()
        log_ratio = log_prob - mb.log_probs
        with torch.no_grad():
            n = mb.num_envs
            final_state = state_index(last_state, slice((chunks.num_chunks - 1) * n, None))
            last_values = self.policy.value(mb.next_obs, final_state, mb.next_episode_start)
            rewards = self.training_rewards(mb)
            if tuple(rewards.shape) != (mb.num_steps, n):
                raise ValueError(f"{type(self).__name__}.training_rewards returned shape {tuple(rewards.shape)}, "
                                 f"expected ({mb.num_steps}, {n}) (steps x env columns of the minibatch)")
            targets, advantages = appo_vtrace_targets(
                log_ratio, rewards.to(values.dtype), values, mb.terminated, mb.truncated, mb.bootstrap_values,
                last_values, c.gamma, c.vtrace_rho, c.vtrace_c, c.ratio_min, c.ratio_max)
            adv_std = advantages.std()
            advantages = normalize_advantages_floored(advantages, c.adv_std_floor)
        ratio = clamped_ratio(log_ratio, c.ratio_min, c.ratio_max)
        policy_loss = appo_policy_loss(ratio, advantages, c.clip_ratio)
        value_loss = appo_value_loss(values, targets, mb.values, c.value_clip)
        loss = policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.policy_version += 1
        with torch.no_grad():
            high = 1.0 + c.clip_ratio
            raw = log_ratio.detach()
            return {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                    "entropy": entropy.detach(), "grad_norm": grad_norm.detach(),
                    "approx_kl": (raw.exp() - 1 - raw).mean(),
                    "clip_frac": ((ratio < 1.0 / high) | (ratio > high)).float().mean(),
                    "adv_std": adv_std, "value_mean": values.detach().mean(), "reward_mean": rewards.mean()}
