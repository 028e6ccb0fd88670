"""ONI (Zheng et al., 2024): an intrinsic reward distilled online from an LLM's feedback on the agent's own
NetHack messages, learned at the same time as the policy, on the APPO learner.

One learner iteration, as the reference's learner runs it::

    rollout arrives (T x N steps, worker processes, collected while the previous update ran)
    -> N(m_t): the count of each step's message in its episode so far      (MessageCounter, carried over rollouts)
    -> unseen messages (classification, retrieval) or pairs (ranking) go to the annotator's queue; never waits
    -> the labels that arrived since the last iteration train the reward model (32 steps per new batch of labels
       while there are fewer than 25k, then 1 per iteration)
    -> every SGD step: r = c_ext clip(r_env, 10) + c_int r_int(m_t) / N(m_t)^beta, r_int from the CURRENT
       reward model (intrinsic_reward), V-trace, APPO's clipped losses

``reward_model``: ``retrieval`` (ONI-retrieval: the label table), ``classification`` (ONI-classification),
``ranking`` (ONI-ranking), ``ellm`` (the ELLM-style bag-of-words baseline: no annotator) or ``none``
(extrinsic only: APPO with ONI's reward coefficients). ``annotator``: ``keyword`` (rules, no model: tests and
CPU runs), ``openai`` (``llm_url``, ``llm_model``: any OpenAI-compatible server) or ``transformers``
(``llm_path``: a local model directory). See docs/agents/oni.md.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import torch
from torch import nn

from zoo.agents import register_agent
from zoo.agents.appo import APPO
from zoo.rollout import Rollout
from zoo.agents.appo.config import APPOConfig
from zoo.agents.config import positive
from zoo.agents.oni.annotator import Annotator, KeywordAnnotator, OpenAIAnnotator, TransformersAnnotator
from zoo.agents.oni.counts import MessageCounter
from zoo.agents.oni.losses import intrinsic_reward
from zoo.agents.oni.messages import decode_message, message_rows, unique_messages
from zoo.agents.oni.pairs import PairPool
from zoo.agents.oni.rewards import RewardModel, make_reward_model, steps_for_iteration
from zoo.errors import ConfigError
from zoo.llm.nethack_prompts import resolve_task

REWARD_MODELS = ("retrieval", "classification", "ranking", "ellm", "none")
ANNOTATORS = ("keyword", "openai", "transformers")

_NETHACK = {"hidden": (), "core_size": 512, "deterministic_eval": False}


@dataclasses.dataclass
class ONIConfig(APPOConfig):
    """APPO's settings (the ONI reference's) plus ONI's: the reward model, the annotator and the reward's
    coefficients. Defaults: facebookresearch/oni (``scripts/main.py``, the README's commands): ``c_int`` 0.4,
    ``c_ext`` 10 (0.1 on Score: the preset), ``beta`` 3, annotation batches of 100, reward models trained with
    Adam 1e-4 on batches of 256. ``task`` is the goal the judge (and the ELLM baseline) is told: ``score``
    (the default on every task, as the reference's ``goal_key=defaultgoal``), or ``oracle`` /
    ``staircase-lvl<N>`` for a goal of that task's own. Set ``extrinsic_coef=0`` for the paper's reward-free
    setting."""

    reward_model: str = "retrieval"
    annotator: str = "keyword"
    task: str | None = None
    extrinsic_coef: float = 10.0
    intrinsic_coef: float = 0.4
    count_exponent: float = 3.0
    # the annotator
    llm_url: str | None = None
    llm_model: str = "Meta-Llama-3.1-8B-Instruct"
    llm_path: str | None = None
    llm_endpoint: str = "chat"
    llm_batch_size: int = 100
    llm_timeout_s: float = 120.0
    llm_temperature: float = 0.1
    annotator_background: str = "process"
    annotator_idle_wait_s: float = 5.0
    # the reward model and its schedule
    reward_lr: float = 1e-4
    reward_batch_size: int = 256
    reward_steps_per_labels: int = 32
    reward_label_threshold: int = 25_000
    ranking_normalize: bool = True
    ranking_threshold: float = -0.5
    pair_subsample: int = 10
    pairs_per_request: int = 10
    max_pending_pairs: int = 200

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {
        # the paper: c_ext 0.1 on Score, 10 on the sparse tasks
        "nethack/score*": {**_NETHACK, "extrinsic_coef": 0.1},
        **APPOConfig.PRESETS,
    }

    def validate(self) -> None:
        super().validate()
        if self.reward_model not in REWARD_MODELS:
            raise ConfigError(f"reward_model must be one of {', '.join(REWARD_MODELS)}, got {self.reward_model!r}")
        if self.annotator not in ANNOTATORS:
            raise ConfigError(f"annotator must be one of {', '.join(ANNOTATORS)}, got {self.annotator!r}")
        for name in ("extrinsic_coef", "intrinsic_coef", "count_exponent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
        positive(self, "llm_batch_size", "llm_timeout_s", "reward_lr", "reward_batch_size", "pair_subsample",
                 "pairs_per_request", "max_pending_pairs", "reward_steps_per_labels", "reward_label_threshold")
        if self.llm_endpoint not in ("chat", "completions"):
            raise ConfigError(f"llm_endpoint must be 'chat' or 'completions', got {self.llm_endpoint!r}")
        if self.task is not None:
            resolve_task(self.task)  # a clear error for an unknown task
        if self.reward_model in ("retrieval", "classification", "ranking"):
            if self.annotator == "openai" and not self.llm_url:
                raise ConfigError("annotator='openai' needs llm_url= (the server's base URL, e.g. "
                                  "http://127.0.0.1:8000/v1); start one with vLLM or `zoo serve-judge`")
            if self.annotator == "transformers" and not self.llm_path:
                raise ConfigError("annotator='transformers' needs llm_path= (a local model directory)")


class _RewardModelState(nn.Module):
    """A reward model as checkpoints and the numerical guard see modules: its ``state_dict`` is the model's own
    flat tensors (weights, optimiser moments, labels, statistics); ``parameters()`` its network's, if any."""

    def __init__(self, model: RewardModel):
        super().__init__()
        object.__setattr__(self, "model", model)
        if isinstance(getattr(model, "net", None), nn.Module):
            self.net = model.net

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.model.state_dict()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        self.model.load_state_dict(dict(state_dict))


@register_agent
class ONI(APPO):
    """ONI on the APPO learner (``zoo.agents.ONI``): see the module docstring; ``reward_model`` and
    ``annotator`` pick the variant. The annotator works in the background; :meth:`close` stops it."""

    config_class = ONIConfig
    config: ONIConfig

    def _build(self) -> None:
        super()._build()
        c = self.config
        self.task = resolve_task(c.task or "score")
        self.message_counter = MessageCounter(self.env.num_envs)
        self.reward_model: RewardModel | None = self._make_reward_model()
        self.pair_pool = PairPool(subsample=c.pair_subsample, pairs_per_request=c.pairs_per_request,
                                  max_pending=c.max_pending_pairs, seed=self.seed)
        self.annotator: Annotator | None = self._make_annotator()
        self._new_labels = 0
        self._reward_stats: dict[str, float] = {}
        self._intrinsic: list[torch.Tensor] = []

    def _make_reward_model(self) -> RewardModel | None:
        c = self.config
        if c.reward_model == "none":
            return None
        kwargs: dict[str, Any] = {"seed": self.seed, "device": self.device}
        if c.reward_model in ("classification", "ranking"):
            kwargs.update(lr=c.reward_lr, batch_size=c.reward_batch_size)
        if c.reward_model == "ranking":
            kwargs.update(normalize=c.ranking_normalize, threshold=c.ranking_threshold)
        if c.reward_model == "ellm":
            kwargs["goal"] = self.task.goal
        return make_reward_model(c.reward_model, **kwargs)

    def _make_annotator(self) -> Annotator | None:
        c, model = self.config, self.reward_model
        if model is None or model.feedback == "none":
            return None
        machinery = {"task": self.task.key, "batch_size": c.llm_batch_size, "background": c.annotator_background,
                     "idle_wait_s": c.annotator_idle_wait_s}
        if c.annotator == "keyword":
            return KeywordAnnotator(**machinery)
        if c.annotator == "openai":
            return OpenAIAnnotator(c.llm_url, c.llm_model, timeout_s=c.llm_timeout_s, temperature=c.llm_temperature,
                                   endpoint=c.llm_endpoint, **machinery)
        return TransformersAnnotator(c.llm_path, temperature=c.llm_temperature, **machinery)

    def close(self) -> None:
        """Stop the annotator's worker, the collector thread and the envs."""
        if getattr(self, "annotator", None) is not None:
            self.annotator.close()
        super().close()

    # -- the APPO hooks ------------------------------------------------------------------
    def on_rollout(self, rollout: Rollout) -> None:
        """Count messages, feed the annotator, take its labels and train the reward model (module docstring)."""
        messages = rollout.obs["message"]
        counts = self.message_counter.update(messages, rollout.episode_starts)
        rollout.extras["message_count"] = torch.as_tensor(counts, device=self.device)
        if self.annotator is None:
            return
        if self.reward_model.feedback == "labels":
            rows, _ = message_rows(messages)
            first, _ = unique_messages(rows)
            self.annotator.submit([decode_message(rows[i]) for i in first])
        else:
            self.pair_pool.add(messages)
            pending = int(self.annotator.stats().get("queued_pairs", self.annotator.stats().get("queue", 0)))
            pairs = self.pair_pool.request(pending)
            if pairs:
                self.annotator.submit_pairs(pairs)
        self.absorb_annotations()

    def absorb_annotations(self) -> int:
        """Take the labels that arrived (without waiting) and train the reward model on the schedule; returns
        how many arrived."""
        c, model = self.config, self.reward_model
        results = self.annotator.poll()
        new = model.add_labels(results.labels) if model.feedback == "labels" else \
            model.add_preferences(results.preferences)
        self._new_labels += new
        steps = steps_for_iteration(model.num_labels, new, label_threshold=c.reward_label_threshold,
                                    steps_per_new_labels=c.reward_steps_per_labels)
        if steps:
            self._reward_stats = model.train_steps(steps)
        return new

    def training_rewards(self, batch: Rollout) -> torch.Tensor:
        """``c_ext clip(r_env, reward_clip) + c_int r_int(m_t) / N(m_t)^beta`` from the current reward model;
        ``r_env`` is the env's reward times ``reward_scale``."""
        c = self.config
        env_reward = batch.rewards * c.reward_scale
        counts = batch.extras["message_count"]
        if self.reward_model is None:
            r_int = torch.zeros_like(env_reward)
        else:
            r_int = self.reward_model.reward(batch.obs["message"]).to(env_reward.device, env_reward.dtype)
        self._intrinsic.append(r_int.detach())
        clip = float("inf") if c.reward_clip is None else c.reward_clip
        return intrinsic_reward(env_reward, r_int, counts, c_ext=c.extrinsic_coef, c_int=c.intrinsic_coef,
                                beta=c.count_exponent, clip=clip)

    def log_metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self._intrinsic:
            r_int = torch.cat([r.flatten() for r in self._intrinsic])
            metrics.update(intrinsic_reward_mean=float(r_int.mean()),
                           intrinsic_reward_nonzero=float((r_int != 0).float().mean()))
            self._intrinsic.clear()
        if self.reward_model is not None:
            metrics["reward_model_labels"] = float(self.reward_model.num_labels)
            metrics["reward_model_new_labels"] = float(self._new_labels)
            self._new_labels = 0
            for key in ("loss", "accuracy"):
                if key in self._reward_stats:
                    metrics[f"reward_model_{key}"] = float(self._reward_stats[key])
        if self.annotator is not None:
            for key, value in self.annotator.stats().items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics[f"annotator_{key}"] = float(value)
        return metrics

    # -- checkpoints -------------------------------------------------------------------------
    def state_modules(self) -> dict[str, nn.Module]:
        modules = super().state_modules()
        if self.reward_model is not None and self.reward_model.feedback != "none":
            modules["reward_model"] = _RewardModelState(self.reward_model)
        return modules

    def training_state(self) -> dict:
        """APPO's, plus the per-episode message counts and the ranking pair pool (labels still queued at the
        annotator are not saved: their messages are submitted again when they come back)."""
        return {**super().training_state(), "message_counter": self.message_counter.state_dict(),
                "pair_pool": self.pair_pool.state_dict()}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.message_counter.load_state_dict(state["message_counter"])
        self.pair_pool.load_state_dict(state["pair_pool"])

    @torch.no_grad()
    def intrinsic_rewards(self, messages: list[str]) -> torch.Tensor:
        """The current reward model's ``r_int`` of each message text (0 for every message with ``reward_model
        ='none'``), without the count decay: what the learned reward says about them."""
        from zoo.agents.oni.messages import encode_message

        rows = torch.stack([torch.from_numpy(encode_message(m)) for m in messages]) if messages else \
            torch.zeros((0, 256), dtype=torch.uint8)
        if self.reward_model is None:
            return torch.zeros(len(messages))
        return self.reward_model.reward(rows, update_stats=False)
