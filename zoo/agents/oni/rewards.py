"""ONI's intrinsic reward models: what turns the annotator's labels into ``r_int(message)``.

Messages are NetHack's ``message`` observation: 256 bytes, latin-1, NUL padded, held by the learner as a uint8
tensor ``(..., 256)``. The annotator sees them as strings (:func:`decode_message`); labels and preferences come
back keyed by those strings. Every model has one interface, which ONI calls::

    model = make_reward_model("classification", seed=0, device="cpu")
    model.add_labels([("You kill the newt!", 1), ("It's a wall.", 0)])    # model.feedback == "labels"
    stats = model.train_steps(steps_for_iteration(model.num_labels, new_labels=2))
    r_int = model.reward(obs["message"])        # (...,) float32, no grad, on the messages' device
    tensors, config = model.state_dict(), model.config()   # safetensors-ready tensors, JSON-able config

``feedback`` says what a model learns from: ``"labels"`` (``add_labels((message, 0|1))``: retrieval and
classification), ``"preferences"`` (``add_preferences((a, b, p))`` with ``p = P(a better than b)``: 1, 0, or
0.5 for a tie: ranking) or ``"none"`` (the ELLM baseline, :mod:`zoo.agents.oni.ellm`). ``reward`` evaluates
each distinct message of the batch once. Models own a seeded CPU generator (batches, dropout) and never touch
the global ones. The ranking model's pairs come from :class:`zoo.agents.oni.pairs.PairPool`.

Defaults are facebookresearch/oni's (``rlaif/reward_model.py``, the learner's reward-model code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.agents.oni.losses import (
    bradley_terry_loss,
    classification_loss,
    normalize_ranking_reward,
    update_running_moments,
)
from zoo.agents.oni.messages import (
    MESSAGE_LEN,
    GrowableRows,
    decode_message,
    encode_message,
    message_key,
    message_rows,
    unique_messages,
)
from zoo.errors import CheckpointError, ConfigError, PreferenceDatasetError
from zoo.utils.device import resolve_device

__all__ = [
    "CharCNN",
    "ClassificationReward",
    "RankingReward",
    "RetrievalReward",
    "RewardModel",
    "decode_message",
    "make_reward_model",
    "message_key",
    "steps_for_iteration",
]

# ----------------------------------------------------------------------------- networks

class CharCNN(nn.Module):
    """The reference's character CNN over a message (``lt_cnn``): bytes -> embedding 32 (0 is padding) ->
    conv 64k7, max-pool 3, conv 64k7, max-pool 3, four conv 64k3, max-pool 3 (ReLU after every conv) ->
    flatten (64 x 5) -> linear 128 + ReLU."""

    out_dim = 128

    def __init__(self, embed_dim: int = 32, channels: int = 64):
        super().__init__()
        self.embed = nn.Embedding(256, embed_dim, padding_idx=0)
        layers: list[nn.Module] = []
        c_in = embed_dim
        for kernel, pool in ((7, True), (7, True), (3, False), (3, False), (3, False), (3, True)):
            layers += [nn.Conv1d(c_in, channels, kernel), nn.ReLU()] + ([nn.MaxPool1d(3, 3)] if pool else [])
            c_in = channels
        self.convs = nn.Sequential(*layers, nn.Flatten(), nn.Linear(5 * channels, 2 * channels), nn.ReLU())
        self.out_dim = 2 * channels

    def forward(self, messages: torch.Tensor) -> torch.Tensor:
        return self.convs(self.embed(messages.long()).transpose(1, 2))


def _dropout(h: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout whose mask comes from ``generator`` (a CPU generator; the mask moves to ``h``)."""
    keep = (torch.rand(h.shape, generator=generator) >= p).to(h.device, h.dtype)
    return h * keep / (1.0 - p)


# ----------------------------------------------------------------------------- the interface

class RewardModel:
    """Base of ONI's reward models (see the module docstring for the interface)."""

    kind = ""
    feedback = "none"

    def __init__(self, *, seed: int = 0, device: str | torch.device = "cpu"):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0

    @property
    def num_labels(self) -> int:
        """How many labels (or labelled pairs) the model has; what the training schedule counts."""
        return 0

    def add_labels(self, labels: Iterable[tuple[str, float]]) -> int:
        raise ConfigError(f"the {self.kind} reward model learns from {self.feedback}, not labels; "
                          "route the annotator's classification labels to a retrieval or classification model")

    def add_preferences(self, preferences: Iterable[tuple[str, str, float]]) -> int:
        raise ConfigError(f"the {self.kind} reward model learns from {self.feedback}, not preferences; "
                          "route the annotator's ranking preferences to a ranking model")

    def train_steps(self, n: int) -> dict[str, float]:
        """``n`` gradient steps; returns loss statistics (nothing to do here)."""
        _check_steps(n)
        return {"steps": 0.0, "num_labels": float(self.num_labels)}

    @torch.no_grad()
    def reward(self, messages: torch.Tensor | np.ndarray, *, update_stats: bool = True) -> torch.Tensor:
        """``r_int`` of each message of ``messages`` ``(..., 256)``: a float32 tensor ``(...)`` on their device
        (CPU for numpy input). ``update_stats`` feeds the batch to a normalising model's running moments."""
        rows, lead = message_rows(messages)
        out_device = messages.device if isinstance(messages, torch.Tensor) else torch.device("cpu")
        if rows.shape[0] == 0:
            return torch.zeros(lead, dtype=torch.float32, device=out_device)
        first, inverse = unique_messages(rows)
        values = self._unique_rewards(rows[first])
        full = values.to(torch.float32)[torch.from_numpy(inverse).to(values.device)]
        full = self._postprocess(full, update_stats)
        return full.reshape(lead).to(out_device)

    def _unique_rewards(self, rows: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _postprocess(self, rewards: torch.Tensor, update_stats: bool) -> torch.Tensor:
        return rewards

    def config(self) -> dict[str, Any]:
        """The JSON-able constructor arguments (device excluded): ``make_reward_model(kind, **config)``."""
        return {"seed": self.seed}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor a resume needs (weights, optimiser moments, data, statistics, generator), flat."""
        return {"rng": self.generator.get_state(), "updates": torch.tensor(self.updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(_get(state, "rng", self).to(torch.uint8))
        self.updates = int(_get(state, "updates", self))


def _check_steps(n: Any) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ConfigError(f"train_steps takes a non-negative number of gradient steps, got {n!r}")


def _get(state: dict[str, torch.Tensor], key: str, model: RewardModel) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"the {model.kind} reward model's state has no tensor {key!r}; it is not this "
                              f"model's state_dict (or the checkpoint is corrupt): save it with state_dict()")
    return state[key]


class _LabelStore:
    """Growable ``message -> label`` storage: encoded rows and float labels, one row per distinct message."""

    def __init__(self) -> None:
        self._rows, self._values = GrowableRows((MESSAGE_LEN,), np.uint8), GrowableRows((), np.float32)
        self.index: dict[str, int] = {}

    @property
    def rows(self) -> np.ndarray:
        return self._rows.view()

    @property
    def values(self) -> np.ndarray:
        return self._values.view()

    def __len__(self) -> int:
        return len(self.index)

    def add(self, labels: Iterable[tuple[str, float]]) -> int:
        """Store ``(message, label)`` pairs; returns how many messages were new."""
        before = len(self.index)
        for item in labels:
            try:
                text, label = item
                label = float(label)
            except (TypeError, ValueError):
                raise PreferenceDatasetError(f"a label must be a (message, label) pair with a numeric label, got "
                                             f"{item!r:.80}") from None
            if not math.isfinite(label):
                raise PreferenceDatasetError(f"label of {text!r:.60} is {label}; labels must be finite (0 or 1)")
            row = encode_message(text)
            key = decode_message(row)
            if key in self.index:  # a relabelled message: the newest label wins, as the reference's table
                self._values.data[self.index[key]] = label
                continue
            self.index[key] = len(self.index)
            self._rows.extend(row[None])
            self._values.extend(np.asarray([label], np.float32))
        return len(self.index) - before

    def state(self) -> dict[str, torch.Tensor]:
        return {"labels/messages": torch.from_numpy(self.rows.copy()),
                "labels/values": torch.from_numpy(self.values.copy())}

    def load(self, state: dict[str, torch.Tensor], model: RewardModel) -> None:
        rows = _get(state, "labels/messages", model).to(torch.uint8).numpy()
        values = _get(state, "labels/values", model).to(torch.float32).numpy()
        if rows.ndim != 2 or rows.shape[1] != MESSAGE_LEN or len(values) != len(rows):
            raise CheckpointError(f"the {model.kind} reward model's labels are inconsistent: messages "
                                  f"{tuple(rows.shape)}, values {tuple(values.shape)}")
        self._rows, self._values = GrowableRows((MESSAGE_LEN,), np.uint8), GrowableRows((), np.float32)
        self._rows.extend(rows)
        self._values.extend(values)
        self.index = {decode_message(r): i for i, r in enumerate(rows)}


# ----------------------------------------------------------------------------- retrieval

class RetrievalReward(RewardModel):
    """ONI-retrieval: the annotator's label of the message, looked up in a table; unseen messages get 0."""

    kind = "retrieval"
    feedback = "labels"

    def __init__(self, *, default: float = 0.0, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(seed=seed, device=device)
        self.default = float(default)
        self.store = _LabelStore()

    @property
    def num_labels(self) -> int:
        return len(self.store)

    def add_labels(self, labels: Iterable[tuple[str, float]]) -> int:
        return self.store.add(labels)

    def _unique_rewards(self, rows: np.ndarray) -> torch.Tensor:
        index, values = self.store.index, self.store.values
        out = [values[index[t]] if (t := decode_message(r)) in index else self.default for r in rows]
        return torch.tensor(out, dtype=torch.float32)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "default": self.default}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), **self.store.state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.store.load(state, self)


# ----------------------------------------------------------------------------- trained models

class _NetworkReward(RewardModel):
    """Shared parts of the trained models: the network, Adam, the weight/optimiser state and batched inference."""

    def __init__(self, *, lr: float, batch_size: int, seed: int, device: str | torch.device,
                 inference_batch: int = 4096):
        super().__init__(seed=seed, device=device)
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {lr!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        self.lr, self.batch_size, self.inference_batch = float(lr), batch_size, inference_batch
        with torch.random.fork_rng(devices=[]):  # the weights come from the model's seed, not the global state
            torch.manual_seed(seed)
            self.net = self._build().to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _forward(self, messages: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score(self, rows: np.ndarray) -> torch.Tensor:
        """The network's output for distinct message rows, in eval mode, batched."""
        self.net.eval()
        canonical = np.zeros((len(rows), MESSAGE_LEN), np.uint8)  # as the labels were stored: re-encoded text
        for i, r in enumerate(rows):
            canonical[i] = encode_message(decode_message(r))
        x = torch.from_numpy(canonical).to(self.device)
        if len(x) == 0:
            return self._forward(x)
        return torch.cat([self._forward(x[i:i + self.inference_batch])
                          for i in range(0, len(x), self.inference_batch)])

    def _sample(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator)[:self.batch_size]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr, "batch_size": self.batch_size}

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {**super().state_dict(), **{f"net/{k}": v.detach().cpu() for k, v in self.net.state_dict().items()}}
        for i, slot in self.optimizer.state_dict()["state"].items():
            out.update({f"optim/{i}/{k}": torch.as_tensor(v).detach().cpu() for k, v in slot.items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        weights = {k[4:]: v for k, v in state.items() if k.startswith("net/")}
        try:
            self.net.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"the {self.kind} reward model's weights do not fit this model ({exc}); build it "
                                  "with the saved config()") from None
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in state.items():
            if k.startswith("optim/"):
                _, i, name = k.split("/", 2)
                slots.setdefault(int(i), {})[name] = v.to(self.device) if name != "step" else v.cpu()
        opt = self.optimizer.state_dict()
        opt["state"] = slots
        self.optimizer.load_state_dict(opt)


class ClassificationReward(_NetworkReward):
    """ONI-classification: char-CNN -> MLP [512, 512] (dropout 0.1) -> 2 logits, cross-entropy on the
    annotator's labels, Adam 1e-4, batch 256; ``r_int = 1[p(helpful) > threshold]`` (threshold 0.5)."""

    kind = "classification"
    feedback = "labels"

    def __init__(self, *, hidden: tuple[int, ...] = (512, 512), dropout: float = 0.1, threshold: float = 0.5,
                 lr: float = 1e-4, batch_size: int = 256, seed: int = 0, device: str | torch.device = "cpu"):
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(f"threshold is a probability in [0, 1), got {threshold!r}")
        self.hidden, self.dropout, self.threshold = tuple(int(h) for h in hidden), float(dropout), float(threshold)
        super().__init__(lr=lr, batch_size=batch_size, seed=seed, device=device)
        self.store = _LabelStore()

    def _build(self) -> nn.Module:
        trunk = CharCNN()
        layers: list[nn.Module] = []
        width = trunk.out_dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.ModuleDict({"trunk": trunk, "body": nn.Sequential(*layers), "out": nn.Linear(width, 2)})

    def _forward(self, messages: torch.Tensor) -> torch.Tensor:
        h = self.net["body"](self.net["trunk"](messages))
        if self.net.training and self.dropout > 0:  # the reference: one dropout, after the hidden layers
            h = _dropout(h, self.dropout, self.generator)
        return self.net["out"](h)

    @property
    def num_labels(self) -> int:
        return len(self.store)

    def add_labels(self, labels: Iterable[tuple[str, float]]) -> int:
        labels = list(labels)
        for item in labels:
            if isinstance(item, (tuple, list)) and len(item) == 2 and item[1] not in (0, 1):
                raise PreferenceDatasetError(f"classification labels must be 0 (not helpful) or 1 (helpful), got "
                                             f"{item!r:.80}")
        return self.store.add(labels)

    def probabilities(self, messages: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``p(helpful | message)`` for each message ``(..., 256)``, no grad."""
        rows, lead = message_rows(messages)
        with torch.no_grad():
            first, inverse = unique_messages(rows)
            p = torch.softmax(self._score(rows[first]), dim=-1)[:, 1].cpu()
        return p[torch.from_numpy(inverse)].reshape(lead)

    def _unique_rewards(self, rows: np.ndarray) -> torch.Tensor:
        return (torch.softmax(self._score(rows), dim=-1)[:, 1] > self.threshold).float()

    def train_steps(self, n: int) -> dict[str, float]:
        _check_steps(n)
        if n == 0 or self.num_labels == 0:
            return {"steps": 0.0, "num_labels": float(self.num_labels)}
        self.net.train()
        rows, labels = torch.from_numpy(self.store.rows), torch.from_numpy(self.store.values)
        total_loss = correct = seen = 0.0
        for _ in range(n):
            idx = self._sample(len(labels))
            x, y = rows[idx].to(self.device), labels[idx].to(self.device).long()
            logits = self._forward(x)
            loss = classification_loss(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item()
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
        self.updates += n
        return {"steps": float(n), "loss": total_loss / n, "accuracy": correct / seen,
                "num_labels": float(self.num_labels)}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": list(self.hidden), "dropout": self.dropout,
                "threshold": self.threshold}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), **self.store.state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.store.load(state, self)


class RankingReward(_NetworkReward):
    """ONI-ranking: char-CNN -> linear 256 + ReLU -> linear 512 -> ReLU -> linear 1 (the reference's message
    encoder and reward head, orthogonal init), soft-label Bradley-Terry on the annotator's pair preferences,
    Adam 1e-4, batch 256 pairs, gradient norm clipped at 10.

    With ``normalize`` (default) ``r_int`` is the output z-scored with running moments of every rewarded batch
    and zeroed at or below ``threshold`` z-units (-0.5): what the paper (after Motif) and the reference's flags
    (``rew_norm=True``, ``eps_threshold_quantile=-0.5``) ask for. The reference computes it and then, through a
    misspelt variable, trains the policy on the raw output, whose offset is arbitrary (Bradley-Terry only sees
    differences); ``normalize=False`` reproduces that.
    """

    kind = "ranking"
    feedback = "preferences"

    def __init__(self, *, normalize: bool = True, threshold: float | None = -0.5, grad_clip: float = 10.0,
                 lr: float = 1e-4, batch_size: int = 256, seed: int = 0, device: str | torch.device = "cpu"):
        if not grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive, got {grad_clip!r}")
        self.normalize, self.grad_clip = bool(normalize), float(grad_clip)
        self.threshold = None if threshold is None else float(threshold)
        super().__init__(lr=lr, batch_size=batch_size, seed=seed, device=device)
        self.pairs = GrowableRows((2, MESSAGE_LEN), np.uint8)
        self.prefs = GrowableRows((), np.float32)
        # the reference's RunningMeanStd: mean 0, var 1, a pseudo-count of 1e-4
        self.stats_mean = torch.zeros((), dtype=torch.float64)
        self.stats_var = torch.ones((), dtype=torch.float64)
        self.stats_count = 1e-4

    def _build(self) -> nn.Module:
        trunk = CharCNN()
        net = nn.ModuleDict({"trunk": trunk,
                             "fc": nn.Sequential(nn.Linear(trunk.out_dim, 256), nn.ReLU(), nn.Linear(256, 512)),
                             "head": nn.Sequential(nn.ReLU(), nn.Linear(512, 1))})
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, gain=1.0)
                nn.init.zeros_(m.bias)
        return net

    def _forward(self, messages: torch.Tensor) -> torch.Tensor:
        return self.net["head"](self.net["fc"](self.net["trunk"](messages))).squeeze(-1)

    @property
    def num_labels(self) -> int:
        return len(self.prefs)

    def add_preferences(self, preferences: Iterable[tuple[str, str, float]]) -> int:
        rows, probs = [], []
        for item in preferences:
            try:
                a, b, p = item
                p = float(p)
            except (TypeError, ValueError):
                raise PreferenceDatasetError(f"a preference must be (message_a, message_b, p) with p = P(a better "
                                             f"than b), got {item!r:.80}") from None
            if not 0.0 <= p <= 1.0:
                raise PreferenceDatasetError(f"preference p = {p} for ({a!r:.40}, {b!r:.40}) is not a probability: "
                                             "use 1 (a better), 0 (b better) or 0.5 (a tie)")
            rows.append(np.stack([encode_message(a), encode_message(b)]))
            probs.append(p)
        if rows:
            self.pairs.extend(np.stack(rows))
            self.prefs.extend(np.asarray(probs, np.float32))
        return len(rows)

    def train_steps(self, n: int) -> dict[str, float]:
        _check_steps(n)
        if n == 0 or self.num_labels == 0:
            return {"steps": 0.0, "num_labels": float(self.num_labels)}
        self.net.train()
        pairs, prefs = self.pairs.view(), self.prefs.view()
        total_loss = total_norm = correct = decided = 0.0
        for _ in range(n):
            idx = self._sample(len(prefs)).numpy()
            flat = pairs[idx].reshape(-1, MESSAGE_LEN)
            first, inverse = unique_messages(flat)  # each distinct message of the batch goes through the net once
            scores = self._forward(torch.from_numpy(flat[first]).to(self.device))
            r = scores[torch.from_numpy(inverse).to(self.device)].reshape(-1, 2)
            p = torch.from_numpy(prefs[idx]).to(self.device)
            loss = bradley_terry_loss(r[:, 0], r[:, 1], p)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            total_norm += float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip))
            self.optimizer.step()
            total_loss += loss.item()
            strict = p != 0.5
            correct += ((r[:, 0] > r[:, 1]) == (p > 0.5))[strict].sum().item()
            decided += strict.sum().item()
        self.updates += n
        return {"steps": float(n), "loss": total_loss / n, "grad_norm": total_norm / n,
                "accuracy": correct / decided if decided else float("nan"), "num_labels": float(self.num_labels)}

    def scores(self, messages: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The ranker's raw output for each message ``(..., 256)`` (no normalisation, no grad), on the CPU."""
        rows, lead = message_rows(messages)
        with torch.no_grad():
            first, inverse = unique_messages(rows)
            raw = self._score(rows[first]).cpu()
        return raw[torch.from_numpy(inverse)].reshape(lead)

    def _unique_rewards(self, rows: np.ndarray) -> torch.Tensor:
        return self._score(rows)

    def _postprocess(self, rewards: torch.Tensor, update_stats: bool) -> torch.Tensor:
        if not self.normalize:
            return rewards
        if update_stats:
            self.stats_mean, self.stats_var, self.stats_count = update_running_moments(
                self.stats_mean, self.stats_var, self.stats_count, rewards.double().cpu())
        mean, var = self.stats_mean.to(rewards), self.stats_var.to(rewards)
        return normalize_ranking_reward(rewards, mean, var, threshold=self.threshold)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "normalize": self.normalize, "threshold": self.threshold,
                "grad_clip": self.grad_clip}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), "prefs/pairs": torch.from_numpy(self.pairs.view().copy()),
                "prefs/p": torch.from_numpy(self.prefs.view().copy()),
                "stats/mean": self.stats_mean.clone(), "stats/var": self.stats_var.clone(),
                "stats/count": torch.tensor(self.stats_count, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        pairs = _get(state, "prefs/pairs", self).to(torch.uint8).numpy()
        prefs = _get(state, "prefs/p", self).to(torch.float32).numpy()
        if pairs.shape[1:] != (2, MESSAGE_LEN) or len(pairs) != len(prefs):
            raise CheckpointError(f"the ranking reward model's preferences are inconsistent: pairs "
                                  f"{tuple(pairs.shape)}, p {tuple(prefs.shape)}")
        self.pairs, self.prefs = GrowableRows((2, MESSAGE_LEN), np.uint8), GrowableRows((), np.float32)
        self.pairs.extend(pairs)
        self.prefs.extend(prefs)
        self.stats_mean = _get(state, "stats/mean", self).double().reshape(())
        self.stats_var = _get(state, "stats/var", self).double().reshape(())
        self.stats_count = float(_get(state, "stats/count", self))


# ----------------------------------------------------------------------------- schedule and factory

def steps_for_iteration(num_labels: int, new_labels: int, *, label_threshold: int = 25_000,
                        steps_per_new_labels: int = 32, steps_per_iteration: int = 1) -> int:
    """Gradient steps for the reward model this learner iteration (the reference's schedule): 32 when new labels
    arrived while the model holds fewer than 25k, then 1 per iteration (the reference gives none at exactly
    25k; here 25k counts as "then")."""
    if num_labels < label_threshold:
        return steps_per_new_labels if new_labels > 0 else 0
    return steps_per_iteration


def make_reward_model(kind: str, **kwargs: Any) -> RewardModel:
    """A reward model by name: ``retrieval``, ``classification``, ``ranking`` or ``ellm`` (the baseline)."""
    from zoo.agents.oni.ellm import BagOfWordsReward

    kinds: dict[str, Any] = {"retrieval": RetrievalReward, "classification": ClassificationReward,
                             "ranking": RankingReward, "ellm": BagOfWordsReward}
    if kind not in kinds:
        raise ConfigError(f"unknown reward model {kind!r}; choose one of {', '.join(kinds)}")
    try:
        return kinds[kind](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for the {kind} reward model: {exc}") from None
