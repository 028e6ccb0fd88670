"""PEBBLE's learned reward: an ensemble of MLPs on (observation, action) trained with the Bradley-Terry loss on
labelled segment pairs, its query selection (uniform, ensemble disagreement), and the store of labelled queries.

Settings follow the PEBBLE / B-Pref reference code (rll-research/BPref, ``reward_model.py``): 3 members, each
3 hidden layers of 256 LeakyReLU units and a tanh output, Adam at 3e-4 over all members, batches of 128
pairs, an epoch per member over its own permutation of the labelled pairs, training stopped once the members'
mean accuracy exceeds 97%; disagreement sampling draws ``large_batch`` (10) times the queries as candidates and
keeps those whose preference probability varies most across the ensemble. The ensemble is one batched network
(:class:`EnsembleMLP`: weights of shape ``(members, in, out)`` and ``torch.baddbmm``), not a loop over members.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.errors import ConfigError, PreferenceDatasetError
from zoo.nets import adam

__all__ = ["QUERY_MODES", "EnsembleMLP", "PreferenceStore", "RewardEnsemble", "RewardModelConfig",
           "bradley_terry_loss", "disagreement", "preference_probability", "select_queries"]

#: the query-selection rules (PEBBLE's ``feed_type`` 0 and 1)
QUERY_MODES = ("uniform", "disagreement")


# ----------------------------------------------------------------------------- pure functions
def preference_probability(returns_a: torch.Tensor, returns_b: torch.Tensor) -> torch.Tensor:
    """``P[a > b] = exp(R_a) / (exp(R_a) + exp(R_b)) = sigmoid(R_a - R_b)`` with ``R`` the segment's predicted
    return, Lee et al. (2021, PEBBLE) eq. 1 (Christiano et al., 2017, eq. 1)."""
    return torch.sigmoid(returns_a - returns_b)


def bradley_terry_loss(returns_a: torch.Tensor, returns_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PEBBLE's reward loss, Lee et al. (2021) eq. 2: the cross-entropy
    ``-[y log P[a > b] + (1 - y) log P[b > a]]`` between the labels ``y`` (1 = ``a`` preferred, 0.5 = equal)
    and :func:`preference_probability`, averaged over pairs and summed over ensemble members.

    ``returns_*``: ``(B,)`` or ``(members, B)`` predicted segment returns; ``labels``: ``(B,)`` in [0, 1].
    """
    logit = returns_a - returns_b
    labels = labels.to(logit.dtype)
    nll = -(labels * nn.functional.logsigmoid(logit) + (1 - labels) * nn.functional.logsigmoid(-logit))
    return nll.mean(-1).sum()


def disagreement(returns_a: torch.Tensor, returns_b: torch.Tensor) -> torch.Tensor:
    """PEBBLE's uncertainty of a query: the standard deviation (over members, population form as B-Pref's
    ``np.std``) of the members' :func:`preference_probability`; ``(members, N) -> (N,)``."""
    return preference_probability(returns_a, returns_b).std(0, correction=0)


def select_queries(scores: torch.Tensor | None, num: int, mode: str) -> torch.Tensor:
    """Indices of the ``num`` candidates to ask about: the first ``num`` (``uniform``: the candidates were drawn
    at random) or the ``num`` with the highest ``scores`` (``disagreement``), highest first."""
    if mode == "uniform":
        return torch.arange(num)
    if mode == "disagreement":
        if scores is None or scores.numel() < num:
            raise ConfigError(f"disagreement selection of {num} queries needs at least that many scored candidates")
        return torch.topk(scores, num).indices
    raise ConfigError(f"unknown query selection {mode!r}; choose from {', '.join(QUERY_MODES)}")


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass
class RewardModelConfig:
    """The reward ensemble's settings (B-Pref's ``train_PEBBLE.yaml`` and ``reward_model.py`` defaults)."""

    ensemble_size: int = 3
    hidden: tuple[int, ...] = (256, 256, 256)
    #: the output squashing (B-Pref's ``activation``: tanh)
    output_activation: str = "tanh"
    lr: float = 3e-4
    #: labelled pairs per gradient step (B-Pref's ``train_batch_size``)
    batch_size: int = 128
    #: epochs per reward update at most (B-Pref's ``reward_update``: 200 by default, 50 on walker, 10 on MetaWorld)
    max_epochs: int = 200
    #: stop once the members' mean training accuracy over an epoch exceeds this
    target_accuracy: float = 0.97
    #: disagreement sampling scores ``large_batch`` times the queries it keeps
    large_batch: int = 10
    query_mode: str = "uniform"
    #: label smoothing: targets ``y (1 - 2 m) + m`` (B-Pref's ``label_margin``)
    label_margin: float = 0.0
    #: labelled pairs kept (oldest dropped first)
    capacity: int = 500_000

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        for name in ("ensemble_size", "batch_size", "max_epochs", "large_batch", "capacity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"reward model {name} must be a positive integer, got {value!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"reward model hidden must be positive layer widths, got {self.hidden!r}")
        if not self.lr > 0:
            raise ConfigError(f"reward model lr must be > 0, got {self.lr!r}")
        if not 0 < self.target_accuracy <= 1:
            raise ConfigError(f"reward model target_accuracy must lie in (0, 1], got {self.target_accuracy!r}")
        if not 0 <= self.label_margin < 0.5:
            raise ConfigError(f"reward model label_margin must lie in [0, 0.5), got {self.label_margin!r}")
        if self.output_activation not in _OUTPUTS:
            raise ConfigError(f"unknown output_activation {self.output_activation!r}; choose from {sorted(_OUTPUTS)}")
        if self.query_mode not in QUERY_MODES:
            raise ConfigError(f"unknown query_mode {self.query_mode!r}; choose from {', '.join(QUERY_MODES)}")


_OUTPUTS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "none": lambda x: x}


# ----------------------------------------------------------------------------- networks
class EnsembleMLP(nn.Module):
    """``members`` MLPs evaluated as one batched computation: ``(members, N, in) -> (members, N, out)``.

    Layer ``l`` holds ``weight_l (members, in, out)`` and ``bias_l (members, 1, out)``, initialised per member
    as ``nn.Linear`` (uniform in ``+-1/sqrt(in)``); hidden layers use LeakyReLU (slope 0.01), as B-Pref's
    ``gen_net``.
    """

    def __init__(self, members: int, in_dim: int, hidden: tuple[int, ...], out_dim: int = 1, *,
                 output: str = "tanh", generator: torch.Generator | None = None):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.num_layers = len(dims) - 1
        self.output = output
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            bound = 1.0 / a ** 0.5
            w = (torch.rand(members, a, b, generator=generator) * 2 - 1) * bound
            bias = (torch.rand(members, 1, b, generator=generator) * 2 - 1) * bound
            self.register_parameter(f"weight_{i}", nn.Parameter(w))
            self.register_parameter(f"bias_{i}", nn.Parameter(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_layers):
            x = torch.baddbmm(getattr(self, f"bias_{i}"), x, getattr(self, f"weight_{i}"))
            if i < self.num_layers - 1:
                x = nn.functional.leaky_relu(x)
        return _OUTPUTS[self.output](x)


class PreferenceStore:
    """The labelled queries: segment pairs of ``(obs, action)`` features ``(N, L, d)`` and labels ``(N,)``
    (1.0 = the first preferred, 0.5 = equal), on the reward model's device; the oldest are dropped past
    ``capacity``. :meth:`state` / :meth:`load_state` give tensors for a training checkpoint."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu"):
        self.capacity, self.device = int(capacity), torch.device(device)
        self.seg_a: torch.Tensor | None = None
        self.seg_b: torch.Tensor | None = None
        self.labels = torch.empty(0, device=self.device)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def add(self, seg_a: torch.Tensor, seg_b: torch.Tensor, labels: Any) -> None:
        """Append answered queries (rows whose label is NaN, i.e. skipped, are dropped)."""
        seg_a = torch.as_tensor(seg_a, dtype=torch.float32, device=self.device)
        seg_b = torch.as_tensor(seg_b, dtype=torch.float32, device=self.device)
        labels = torch.as_tensor(np.asarray(labels, np.float32) if not torch.is_tensor(labels) else labels,
                                 device=self.device).float().reshape(-1)
        if seg_a.ndim != 3 or seg_a.shape != seg_b.shape or labels.shape[0] != seg_a.shape[0]:
            raise PreferenceDatasetError(f"queries must be two (N, L, d) segment batches and N labels, got "
                                         f"{tuple(seg_a.shape)}, {tuple(seg_b.shape)} and {tuple(labels.shape)}")
        if self.seg_a is not None and seg_a.shape[1:] != self.seg_a.shape[1:]:
            raise PreferenceDatasetError(f"queries of shape {tuple(seg_a.shape[1:])} do not match the stored "
                                         f"{tuple(self.seg_a.shape[1:])}")
        keep = ~torch.isnan(labels)
        if not ((labels[keep] >= 0) & (labels[keep] <= 1)).all():
            raise PreferenceDatasetError("labels must lie in [0, 1] (1 = the first segment preferred) or be NaN "
                                         "(not answered)")
        seg_a, seg_b, labels = seg_a[keep], seg_b[keep], labels[keep]
        if self.seg_a is not None:
            seg_a, seg_b = torch.cat([self.seg_a, seg_a]), torch.cat([self.seg_b, seg_b])
            labels = torch.cat([self.labels, labels])
        self.seg_a, self.seg_b, self.labels = seg_a[-self.capacity:], seg_b[-self.capacity:], labels[-self.capacity:]

    def state(self) -> dict[str, torch.Tensor]:
        if self.seg_a is None:
            return {}
        return {"seg_a": self.seg_a.cpu(), "seg_b": self.seg_b.cpu(), "labels": self.labels.cpu()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.seg_a = self.seg_b = None
        self.labels = torch.empty(0, device=self.device)
        if state:
            self.add(state["seg_a"], state["seg_b"], state["labels"])


class RewardEnsemble(nn.Module):
    """PEBBLE's reward model: :class:`EnsembleMLP` on ``[obs, action]`` with its optimizer and labelled queries.

    ``reward(obs, act)`` is the members' mean; :meth:`add_queries` stores answered queries; :meth:`train_reward`
    runs B-Pref's epochs; :meth:`select` picks queries among candidates. ``state_dict()`` holds the network's
    tensors only; :attr:`store` has its own :meth:`PreferenceStore.state` (build the model on its device:
    ``device=`` places the network and the store).
    """

    def __init__(self, obs_dim: int, act_dim: int, config: RewardModelConfig | None = None, *,
                 device: torch.device | str = "cpu", seed: int = 0):
        super().__init__()
        self.config = config or RewardModelConfig()
        c = self.config
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        generator = torch.Generator().manual_seed(int(seed))
        self.net = EnsembleMLP(c.ensemble_size, self.obs_dim + self.act_dim, c.hidden, 1,
                               output=c.output_activation, generator=generator).to(device)
        self.optimizer = adam(self.net.parameters(), lr=c.lr)
        self.store = PreferenceStore(c.capacity, device)
        #: the generator of the training permutations (seeded from ``seed``)
        self.generator = torch.Generator().manual_seed(int(seed) + 1)

    @property
    def device(self) -> torch.device:
        return self.net.weight_0.device

    # -- predictions --------------------------------------------------------
    def features(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``[obs, act]`` flattened to ``(..., obs_dim + act_dim)`` float32 on the model's device."""
        obs = torch.as_tensor(obs, device=self.device).float()
        act = torch.as_tensor(act, device=self.device).float()
        lead = obs.shape[:-1]
        if obs.shape[-1:] != (self.obs_dim,) or act.numel() != lead.numel() * self.act_dim:
            raise ConfigError(f"the reward model takes (..., {self.obs_dim}) observations and (..., {self.act_dim}) "
                              f"actions, got shapes {tuple(obs.shape)} and {tuple(act.shape)}")
        return torch.cat([obs, act.reshape(*lead, self.act_dim)], dim=-1)

    def member_rewards(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's reward of features ``(..., d)``: ``(members, ...)``."""
        lead = x.shape[:-1]
        flat = x.reshape(1, -1, x.shape[-1]).expand(self.config.ensemble_size, -1, -1)
        return self.net(flat).reshape(self.config.ensemble_size, *lead)

    def member_returns(self, segments: torch.Tensor) -> torch.Tensor:
        """Each member's predicted return of ``(N, L, d)`` segments: ``(members, N)``."""
        return self.member_rewards(segments).sum(-1)

    @torch.no_grad()
    def reward(self, obs: torch.Tensor, act: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
        """The ensemble-mean reward of ``(..., obs_dim)`` observations and their actions, shaped ``(...)``, in
        chunks of ``chunk`` rows (e.g. relabelling a replay buffer, as PEBBLE after each reward update)."""
        x = self.features(obs, act)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.cat([self.member_rewards(flat[i:i + chunk]).mean(0) for i in range(0, flat.shape[0], chunk)])
        return out.reshape(x.shape[:-1])

    # -- queries ------------------------------------------------------------
    def num_candidates(self, num_queries: int) -> int:
        """How many candidate pairs to draw for ``num_queries`` queries (``large_batch`` times as many for
        disagreement sampling, as B-Pref)."""
        return num_queries * (self.config.large_batch if self.config.query_mode == "disagreement" else 1)

    @torch.no_grad()
    def select(self, seg_a: torch.Tensor, seg_b: torch.Tensor, num_queries: int,
               mode: str | None = None) -> torch.Tensor:
        """Indices of the candidate pairs ``(N, L, d)`` to send to the teacher (see :func:`select_queries`)."""
        mode = mode or self.config.query_mode
        scores = None
        if mode == "disagreement":
            scores = disagreement(self.member_returns(seg_a.to(self.device)), self.member_returns(seg_b.to(self.device)))
        return select_queries(scores, num_queries, mode)

    def add_queries(self, seg_a: torch.Tensor, seg_b: torch.Tensor, labels: Any) -> None:
        """Store answered queries (``(N, L, d)`` features of both segments, labels 1.0 = first preferred)."""
        self.store.add(seg_a, seg_b, labels)

    # -- training -----------------------------------------------------------
    def train_epoch(self) -> np.ndarray:
        """One pass of every member over its own permutation of the labelled pairs, in batches of
        ``batch_size`` (one Adam step per batch on the summed loss); returns each member's accuracy."""
        c, store, members = self.config, self.store, self.config.ensemble_size
        n = len(store)
        if n == 0:
            raise PreferenceDatasetError("the reward model has no labelled queries to train on: add_queries first")
        perms = torch.stack([torch.randperm(n, generator=self.generator) for _ in range(members)]).to(self.device)
        correct = torch.zeros(members, device=self.device)
        counted = 0
        for start in range(0, n, c.batch_size):
            idx = perms[:, start:start + c.batch_size]  # (members, b)
            labels = store.labels[idx]
            ra = self.net(store.seg_a[idx].reshape(members, -1, store.seg_a.shape[-1])).reshape(idx.shape + (-1,))
            rb = self.net(store.seg_b[idx].reshape(members, -1, store.seg_b.shape[-1])).reshape(idx.shape + (-1,))
            ra, rb = ra.sum(-1), rb.sum(-1)
            targets = labels * (1 - 2 * c.label_margin) + c.label_margin
            loss = bradley_terry_loss(ra, rb, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                decided = labels != 0.5  # equal pairs have no right answer
                correct += (((ra > rb).float() == labels) & decided).sum(1)
                counted += int(decided[0].sum())
        return (correct / max(counted, 1)).cpu().numpy()

    def train_reward(self, max_epochs: int | None = None) -> dict[str, float]:
        """B-Pref's reward update: epochs until the members' mean accuracy exceeds ``target_accuracy`` or
        ``max_epochs``; returns the epochs run and the last accuracy."""
        epochs = self.config.max_epochs if max_epochs is None else int(max_epochs)
        accuracy, done = np.zeros(self.config.ensemble_size), 0
        for done in range(1, epochs + 1):
            accuracy = self.train_epoch()
            if float(accuracy.mean()) > self.config.target_accuracy:
                break
        return {"epochs": float(done), "accuracy": float(accuracy.mean())}
