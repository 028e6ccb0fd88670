"""The loop that PEBBLE and A-PARL share: SAC trained on a reward learned from a scripted teacher's preferences.

Schedule (Lee et al., 2021, PEBBLE, Algorithm 1; rll-research/BPref ``train_PEBBLE.py``): ``num_seed_steps``
random actions, then ``num_unsup_steps`` of SAC on the k-NN state-entropy reward (:class:`StateEntropy`,
k = 5), then reward learning: a first round of ``queries_per_round`` uniformly drawn queries, the critic reset
and ``reset_update`` SAC steps on the relabelled buffer, and a further round every ``feedback_every`` env
steps (ensemble-disagreement queries) until ``feedback_budget`` queries are used. Each round trains the
:class:`RewardEnsemble` (:meth:`reward_update`: B-Pref's epochs; A-PARL adds its hypergradient) and relabels the
WHOLE replay buffer with the ensemble's mean reward; new transitions are stored with the learned reward.
Query segments (``segment`` steps of one env, within one episode) come from the newest ``query_window``
transitions of the replay buffer (B-Pref keeps the last 100 episodes in its reward model instead); the budget
counts the queries asked (B-Pref's ``total_feedback``), skipped ones included. SAC takes ``gradient_steps``
steps every ``train_freq`` env steps once the seed steps are done (``learning_starts`` is not used: the seed
steps play its part).

The env's true reward goes into a separate array beside the buffer: only the teacher reads it (and the logs,
as ``true_return`` and the Spearman correlation of learned vs true reward); SAC never trains on it.

Why composition: the agent holds a :class:`~zoo.agents.sac.SAC` (``self.sac``, built on the same env with a
token replay buffer) and calls its ``train_step`` / ``explore`` on batches from its own buffer, whose rewards
it rewrites. Subclassing SAC would make the chain Agent -> OffPolicyAgent -> SAC -> PEBBLE -> PARL; this
family keeps Agent -> PreferenceSAC -> PEBBLE / PARL, and SAC's updates are reused unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from zoo.agents.base import Agent
from zoo.agents.config import non_negative, positive
from zoo.agents.parl.entropy import StateEntropy
from zoo.agents.parl.reward_model import QUERY_MODES, RewardEnsemble, RewardModelConfig
from zoo.agents.sac import SAC, SACConfig
from zoo.buffers.replay import ReplayBuffer
from zoo.datasets.teachers import TEACHER_MODES, ScriptedTeacher
from zoo.errors import ConfigError
from zoo.nets import adam
from zoo.rollout import EpisodeStats, Obs

__all__ = ["PreferenceSAC", "PreferenceSACConfig", "spearman"]


def spearman(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D samples (ties broken by order; 0 when either is constant)."""
    x, y = (torch.as_tensor(np.asarray(v), dtype=torch.float64).reshape(-1) for v in (x, y))
    if x.shape != y.shape or x.numel() < 2:
        raise ConfigError(f"spearman needs two samples of equal size >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    rx = torch.empty_like(x).scatter_(0, x.argsort(), torch.arange(x.numel(), dtype=torch.float64))
    ry = torch.empty_like(y).scatter_(0, y.argsort(), torch.arange(y.numel(), dtype=torch.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    if x.std() == 0 or y.std() == 0 or denom == 0:
        return 0.0
    return float((rx * ry).sum()) / denom


@dataclasses.dataclass
class PreferenceSACConfig(SACConfig):
    """SAC's settings plus the preference schedule and the reward model (B-Pref's ``train_PEBBLE.yaml`` /
    ``reward_model.py`` defaults; presets in the agents). SAC keeps CPU-sized nets (256 x 2, batch 256) by
    default; B-Pref's 1024 x 2 nets and batch 1024 are the walker preset."""

    #: random actions before any learning (B-Pref ``num_seed_steps``)
    num_seed_steps: int = 1_000
    #: SAC steps on the state-entropy reward after the seed steps (B-Pref ``num_unsup_steps``; PEBBLE 9k)
    num_unsup_steps: int = 9_000
    #: env steps between two query rounds after the first (B-Pref ``num_interact``)
    feedback_every: int = 5_000
    #: queries per round (B-Pref ``reward_batch``)
    queries_per_round: int = 128
    #: queries asked in all (B-Pref ``max_feedback``)
    feedback_budget: int = 1_400
    #: steps per segment (B-Pref ``segment``)
    segment: int = 50
    #: queries are drawn from the newest this many transitions (B-Pref keeps the last 100 episodes)
    query_window: int = 100_000
    query_mode: str = "disagreement"
    teacher: str = "oracle"
    #: the k of the k-NN state entropy (B-Pref ``topK``)
    entropy_k: int = 5
    #: reinitialise the critic after the unsupervised phase, then take ``reset_update`` SAC steps
    reset_critic: bool = True
    reset_update: int = 100
    reward_ensemble: int = 3
    reward_hidden: tuple[int, ...] = (256, 256, 256)
    reward_lr: float = 3e-4
    reward_batch_size: int = 128
    #: epochs per reward update at most (B-Pref ``reward_update``)
    reward_max_epochs: int = 200
    reward_target_accuracy: float = 0.97
    large_batch: int = 10
    # B-Pref's SAC (config/agent/sac.yaml) where it differs from CleanRL's: the temperature starts at 0.1 (the
    # learned reward lies in [-1, 1]), one actor step per critic step, target networks every second step
    alpha_init: float = 0.1
    policy_frequency: int = 1
    target_network_frequency: int = 2
    policy_lr: float = 3e-4
    q_lr: float = 3e-4

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def validate(self) -> None:
        super().validate()
        positive(self, "feedback_every", "queries_per_round", "feedback_budget", "segment", "query_window",
                 "entropy_k", "reward_ensemble", "reward_lr", "reward_batch_size", "reward_max_epochs",
                 "large_batch")
        non_negative(self, "num_seed_steps", "num_unsup_steps", "reset_update")
        if self.query_mode not in QUERY_MODES:
            raise ConfigError(f"unknown query_mode {self.query_mode!r}; choose from {', '.join(QUERY_MODES)}")
        if self.teacher not in TEACHER_MODES:
            raise ConfigError(f"unknown teacher {self.teacher!r}; choose from {', '.join(TEACHER_MODES)}")
        if self.query_window < 2 * self.segment:
            raise ConfigError(f"query_window ({self.query_window}) must hold at least two segments of {self.segment} "
                              f"steps")
        if self.prioritized_replay:
            raise ConfigError("prioritized_replay is not supported here: relabelling rewrites every reward, so stale "
                              "TD priorities would mislead; leave it False")
        if self.buffer_size < self.segment:
            raise ConfigError(f"buffer_size ({self.buffer_size}) must hold at least one segment ({self.segment} steps)")

    def reward_config(self) -> RewardModelConfig:
        return RewardModelConfig(ensemble_size=self.reward_ensemble, hidden=self.reward_hidden, lr=self.reward_lr,
                                 batch_size=self.reward_batch_size, max_epochs=self.reward_max_epochs,
                                 target_accuracy=self.reward_target_accuracy, large_batch=self.large_batch,
                                 query_mode=self.query_mode)

    def sac_overrides(self) -> dict[str, Any]:
        """The inner SAC's hyperparameters: this config's SAC fields, with a token replay buffer (the family
        keeps its own)."""
        names = {f.name for f in dataclasses.fields(SACConfig)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values.update(buffer_size=self.batch_size, learning_starts=0, prioritized_replay=False)
        return values


class PreferenceSAC(Agent):
    """SAC on a reward learned from preferences (the family of :class:`PEBBLE` and :class:`PARL`).

    Subclasses may override :meth:`reward_update` (what one round does to the reward model)."""

    config_class = PreferenceSACConfig
    config: PreferenceSACConfig

    def _build(self) -> None:
        c = self.config
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if not isinstance(obs_space, spaces.Box) or not isinstance(act_space, spaces.Box):
            raise ConfigError(f"{type(self).__name__} needs Box observations and actions, got {obs_space} and "
                              f"{act_space}")
        self.sac = SAC(self.env, seed=self.seed, device=self.device, **c.sac_overrides())
        self.obs_dim, self.act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        self.reward_model = RewardEnsemble(self.obs_dim, self.act_dim, c.reward_config(), device=self.device,
                                           seed=self.seed)
        self.entropy = StateEntropy(c.entropy_k).to(self.device)
        self.teacher = ScriptedTeacher(c.teacher, segment=c.segment)
        self.replay = ReplayBuffer(c.buffer_size, obs_space, act_space, num_envs=self.env.num_envs, device=self.device,
                                   n_step=c.n_step, gamma=c.gamma, seed=self.seed)
        #: the env's true rewards, slot by slot beside the buffer (for the teacher and the logs only)
        self.true_rewards = np.zeros((self.replay.num_slots, self.env.num_envs), np.float32)
        self._feedback_used = 0
        self._labelled = 0
        self._rounds = 0
        self._last_round = 0
        self._reward_ready = False
        self._round_metrics: dict[str, float] = {}

    # -- checkpoints ------------------------------------------------------------
    def state_modules(self) -> dict[str, nn.Module]:
        return {**{f"sac/{k}": v for k, v in self.sac.state_modules().items()}, "reward": self.reward_model.net}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**{f"sac/{k}": v for k, v in self.sac.state_optimizers().items()},
                "reward": self.reward_model.optimizer}

    def extra_state(self) -> dict:
        return {"_feedback_used": self._feedback_used, "_labelled": self._labelled, "_rounds": self._rounds,
                "_last_round": self._last_round, "_reward_ready": self._reward_ready, "_sac_updates": self.sac._updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.sac._updates = int(state.get("_sac_updates", 0))

    def training_state(self) -> dict[str, Any]:
        filled = self.replay.num_slots if self.replay.full else self.replay.pos
        state: dict[str, Any] = {"replay": self.replay.state_dict(), "true_rewards": self.true_rewards[:filled].copy(),
                                 "preferences": self.reward_model.store.state(),
                                 "entropy": dict(self.entropy.state_dict()),
                                 "reward_generator": self.reward_model.generator.get_state()}
        if hasattr(self, "_stats"):
            state["episode_stats"] = self._stats.state_dict()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])
        true = np.asarray(state["true_rewards"], np.float32)
        self.true_rewards[...] = 0
        self.true_rewards[:true.shape[0]] = true
        self.reward_model.store.load_state(state["preferences"])
        self.entropy.load_state_dict({k: torch.as_tensor(v) for k, v in state["entropy"].items()})
        self.reward_model.generator.set_state(torch.as_tensor(state["reward_generator"]))
        if "episode_stats" in state:
            self._stats = EpisodeStats(self.env.num_envs, self.env.device)
            self._stats.load_state_dict(state["episode_stats"])

    # -- acting -----------------------------------------------------------------
    def _act(self, obs: Obs, deterministic: bool) -> torch.Tensor:
        return self.sac.actor(obs, deterministic=deterministic)[0]

    # -- the buffer -------------------------------------------------------------
    def _filled(self) -> int:
        return self.replay.num_slots if self.replay.full else self.replay.pos

    def _slot_order(self) -> np.ndarray:
        """The buffer's filled slots, oldest first."""
        if self.replay.full:
            return (self.replay.pos + np.arange(self.replay.num_slots)) % self.replay.num_slots
        return np.arange(self.replay.pos)

    def _observations(self) -> np.ndarray:
        return self.replay.observations[None].reshape(self.replay.num_slots, self.env.num_envs, -1)

    @torch.no_grad()
    def relabel(self) -> None:
        """Set every stored reward to the ensemble's mean prediction (PEBBLE after each reward update)."""
        filled = self._filled()
        obs = torch.as_tensor(self._observations()[:filled])
        act = torch.as_tensor(self.replay.actions[:filled]).reshape(filled, self.env.num_envs, -1)
        self.replay.rewards[:filled] = self.reward_model.reward(obs, act).cpu().numpy()

    def reward_correlation(self, max_samples: int = 20_000) -> float:
        """Spearman correlation of the learned (stored) and the true rewards over the buffer (a seeded subsample
        of at most ``max_samples``)."""
        filled = self._filled()
        learned, true = self.replay.rewards[:filled].reshape(-1), self.true_rewards[:filled].reshape(-1)
        if learned.size > max_samples:
            pick = np.random.default_rng(self._rounds).choice(learned.size, max_samples, replace=False)
            learned, true = learned[pick], true[pick]
        return spearman(learned, true) if learned.size >= 2 else 0.0

    def sample_segments(self, count: int, window: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """``count`` segments of ``segment`` consecutive steps of one env, within one episode, from the newest
        ``window`` transitions: ``(count, L, obs + act)`` features and ``(count, L)`` true rewards."""
        c, n_env = self.config, self.env.num_envs
        order = self._slot_order()
        slots = max(c.segment, min(order.size, -(-(window or c.query_window) // n_env)))
        order = order[-slots:]
        if order.size < c.segment:
            raise ConfigError(f"the buffer holds {order.size} steps per env, fewer than a segment ({c.segment}): "
                              f"query rounds need num_seed_steps + num_unsup_steps >= segment * num_envs")
        done = (self.replay.terminated | self.replay.truncated)[order]  # (T, N), oldest first
        # an episode may end only at a segment's last step
        ends = np.concatenate([np.zeros((1, n_env), np.int64), np.cumsum(done, 0)], 0)
        starts_max = order.size - c.segment + 1
        rng, picked = self.np_random, []
        for _ in range(8):
            s = rng.integers(0, starts_max, size=4 * count)
            e = rng.integers(0, n_env, size=4 * count)
            ok = ends[s + c.segment - 1, e] - ends[s, e] == 0
            picked += list(zip(s[ok], e[ok]))
            if len(picked) >= count:
                break
        if len(picked) < count:  # episodes shorter than a segment: allow crossing (B-Pref pads instead)
            s = rng.integers(0, starts_max, size=count - len(picked))
            picked += list(zip(s, rng.integers(0, n_env, size=s.size)))
        s, e = (np.asarray(v) for v in zip(*picked[:count]))
        steps = order[s[:, None] + np.arange(c.segment)]  # (count, L) slots
        obs = self._observations()[steps, e[:, None]]
        act = self.replay.actions.reshape(self.replay.num_slots, n_env, -1)[steps, e[:, None]]
        feats = torch.as_tensor(np.concatenate([obs, act], -1), dtype=torch.float32)
        return feats, self.true_rewards[steps, e[:, None]].astype(np.float64)

    # -- one round of feedback ----------------------------------------------------
    def query_round(self) -> dict[str, float]:
        """Ask the teacher one round of queries, update the reward model and relabel the buffer."""
        c = self.config
        n = min(c.queries_per_round, c.feedback_budget - self._feedback_used)
        mode = "uniform" if self._rounds == 0 else c.query_mode
        candidates = n * (c.large_batch if mode == "disagreement" else 1)
        feats, true = self.sample_segments(2 * candidates)
        seg_a, seg_b, ra, rb = feats[:candidates], feats[candidates:], true[:candidates], true[candidates:]
        idx = self.reward_model.select(seg_a, seg_b, n, mode).cpu().numpy()
        if (self.teacher.config.eps_skip > 0 or self.teacher.config.eps_equal > 0) and self.teacher.scale is None:
            self.teacher.scale = float(np.concatenate([ra, rb]).sum(1).mean())  # a typical segment's return
        answer = self.teacher.label(ra[idx], rb[idx], self.np_random)
        self.reward_model.add_queries(seg_a[idx], seg_b[idx], answer.labels)
        self._feedback_used += n
        self._labelled += int(answer.answered.sum())
        self._rounds += 1
        self._last_round = self.num_timesteps
        out = {"feedback": float(self._feedback_used), "labelled": float(self._labelled), "rounds": float(self._rounds)}
        if len(self.reward_model.store):
            out.update(self.reward_update(seg_a[idx], seg_b[idx], answer.labels))
            self._reward_ready = True
            self.relabel()
            out["reward_spearman"] = self.reward_correlation()
        return out

    def reward_update(self, seg_a: torch.Tensor, seg_b: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
        """Train the reward model after a round (PEBBLE: B-Pref's Bradley-Terry epochs over all labelled pairs);
        ``seg_*`` / ``labels``: this round's queries (on the current policy's data)."""
        stats = self.reward_model.train_reward(self.config.reward_max_epochs)
        return {"reward_epochs": stats["epochs"], "reward_accuracy": stats["accuracy"]}

    def reset_critic(self) -> None:
        """Reinitialise SAC's critics and their optimizer (B-Pref's ``reset_critic`` after the unsupervised
        phase: its Q-values were fitted to the entropy reward)."""
        sac = self.sac
        for q, target in ((sac.q1, sac.q1_target), (sac.q2, sac.q2_target)):
            for module in q.modules():
                if hasattr(module, "reset_parameters") and module is not q:
                    module.reset_parameters()
            target.load_state_dict(q.state_dict())
        sac.q_optimizer = adam(list(sac.q1.parameters()) + list(sac.q2.parameters()), lr=self.config.q_lr)

    # -- the loop -----------------------------------------------------------------
    def _sac_step(self, unsupervised: bool) -> dict[str, torch.Tensor]:
        c = self.config
        batch = self.replay.sample(c.batch_size)
        if unsupervised:  # B-Pref update_state_ent: entropy of the sampled states against the whole buffer
            filled = self._filled()
            reference = torch.as_tensor(self._observations()[:filled].reshape(-1, self.obs_dim), device=self.device)
            batch = batch._replace(rewards=self.entropy(batch.observations.reshape(c.batch_size, -1),
                                                        reference).to(batch.rewards.dtype))
        return self.sac.train_step(batch, self.schedule_progress())

    def _learn(self, total_steps: int, report: Callable[[dict], bool]) -> None:
        c, env = self.config, self.env
        if not hasattr(self, "_obs"):
            self._obs = env.reset()
            self.replay.truncate_open_episodes()
            if not hasattr(self, "_stats"):
                self._stats = EpisodeStats(env.num_envs, env.device)
        start = self.num_timesteps
        end = start + total_steps
        metrics: dict[str, torch.Tensor] = {}
        next_report = start
        unsup_end = c.num_seed_steps + c.num_unsup_steps
        while self.num_timesteps < end:
            seeding = self.num_timesteps < c.num_seed_steps or len(self.replay) < c.batch_size
            with torch.no_grad():
                actions = env.sample_actions() if seeding else self.sac.explore(self._obs, self.schedule_progress())
                stored = torch.zeros(env.num_envs)
                if self._reward_ready:
                    stored = self.reward_model.reward(self._obs.reshape(env.num_envs, -1), actions)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            slot = self.replay.pos
            self.replay.add(self._obs, actions, stored, info["final_obs"], terminated, truncated)
            self.true_rewards[slot] = reward.detach().cpu().numpy()
            self._stats.update(reward, terminated, truncated, info.get("success"))
            self._obs = next_obs
            self.num_timesteps += env.num_envs
            t = self.num_timesteps
            if t >= unsup_end and self._feedback_used < c.feedback_budget and self._filled() >= c.segment and \
                    (self._rounds == 0 or t - self._last_round >= c.feedback_every):
                first = self._rounds == 0
                self._round_metrics = self.query_round()
                if first and c.reset_critic:
                    self.reset_critic()
                    for _ in range(c.reset_update):
                        metrics = self._sac_step(False)
            if not seeding and t // c.train_freq > (t - env.num_envs) // c.train_freq:
                for _ in range(c.gradient_steps):
                    metrics = self._sac_step(unsupervised=not self._reward_ready)
            if t >= next_report or t >= end:
                next_report = t + max(1000, total_steps // 100)
                out = {k: float(v) for k, v in metrics.items()}
                out.update(self._stats.summary())
                if "return_mean" in out:
                    out["true_return"] = out["return_mean"]
                out.update(self._round_metrics, feedback=float(self._feedback_used))
                if not report(out):
                    break
