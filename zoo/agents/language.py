"""The family of the language agents (ArCHer, CHAI, offline ArCHer, filtered BC, token-level PPO): an actor
that is a causal LM, played on a batched text game; dialogue collection, the behaviour-cloning warm start,
gradient accumulation and clipping, sampled-return evaluation, checkpoints and ``save_pretrained``.

Each agent derives from :class:`LanguageAgent` directly and holds the other parts it uses (the utterance
critic of ArCHer, CHAI and offline ArCHer is :class:`zoo.agents.archer.critic.UtteranceCriticLearner`). Its
config combines :class:`LanguageAgentConfig` with the settings dataclasses of those parts:
:class:`ActorTrainingSettings` for the agents that train their actor (all but CHAI).

The actor is ``"tiny"`` (a 2-layer GPT-2 with a word-level tokenizer built from the game's vocabulary, random
weights, nothing downloaded), a Hugging Face hub id, or a local directory; ``lora=True`` trains LoRA adapters
(``peft``) instead of all weights. Models stay in eval mode (no dropout), so that the log-probabilities
trained on are those of the sampling policy.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import time
import typing
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from zoo.agents.base import Agent, with_own_randomness
from zoo.agents.config import AgentConfig, positive
from zoo.buffers.utterances import sample_turns
from zoo.envs.text import TextVecEnv
from zoo.envs.text.dialogues import Turn, dialogue_return, weak_dialogues
from zoo.errors import CheckpointError, ConfigError
from zoo.llm.logprobs import score_utterances
from zoo.llm.models import MINILM, TINY, Utterances, load_actor, load_tokenizer, newline_token_ids, sample_utterances
from zoo.nets import adam


@dataclasses.dataclass
class LanguageAgentConfig(AgentConfig):
    """What every language agent shares. Paper defaults (ArCHer, Twenty Questions); with ``actor="tiny"``
    the class's ``TINY_DEFAULTS`` (CPU-sized) replace the paper's values and presets, not explicit overrides."""

    #: ``"tiny"``, a hub id (``"gpt2"``, ``"mistralai/Mistral-7B-Instruct-v0.2"``) or a local directory
    actor: str = TINY
    tiny_layers: int = 2
    tiny_width: int = 64
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "auto"
    num_envs: int = 32
    rollout_size: int = 128
    temperature: float = 1.0
    max_new_tokens: int = 32
    batch_size: int = 8
    grad_accum_steps: int = 32
    #: how the accumulated minibatch gradients combine: "sum" (the ArCHer reference: each minibatch loss is
    #: backpropagated as it is, then the norm is clipped) or "mean" (each divided by their number)
    grad_accum: typing.Literal["sum", "mean"] = "sum"
    #: gradient-norm clip of every update (None: no clip)
    max_grad_norm: float | None = 1.0
    #: behaviour-cloning warm start on a weak scripted player's dialogues before the first iteration
    #: (-1: 'auto', i.e. 300 steps for the tiny actor, none for a given model, assumed fine-tuned already)
    sft_steps: int = -1
    sft_episodes: int = 2000
    sft_lr: float = 1e-3
    sft_batch_size: int = 32
    sft_guess_prob: float = 0.3

    TINY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {}
    LEGACY_DEFAULTS = {"grad_accum": "mean"}
    #: why this agent has none of its ``REMOVED_FIELDS``, said when one is passed (the base's message else)
    REMOVED_BECAUSE: typing.ClassVar[str] = ""

    @classmethod
    def check_keys(cls, keys) -> None:
        """The base's check, with the reason this agent has none of its ``REMOVED_FIELDS`` when one is passed."""
        for key in keys:
            if key in cls.REMOVED_FIELDS and cls.REMOVED_BECAUSE:
                raise ConfigError(f"{cls.__name__.removesuffix('Config')} has no hyperparameter {key!r}: "
                                  f"{cls.REMOVED_BECAUSE} (older checkpoints that carry it still load); drop it")
        super().check_keys(keys)

    @classmethod
    def fill_defaults(cls, values: dict[str, Any], overrides) -> dict[str, Any]:
        if values.get("actor", TINY) == TINY:
            values = {**values, **cls.TINY_DEFAULTS, **overrides}
        return values

    def validate(self) -> None:
        positive(self, "num_envs", "rollout_size", "max_new_tokens", "batch_size", "grad_accum_steps",
                 "sft_lr", "sft_batch_size", "tiny_layers", "tiny_width")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be positive or None (no clip), got {self.max_grad_norm}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.sft_episodes < 0 or self.sft_steps < -1:
            raise ConfigError("sft_episodes must be >= 0, sft_steps >= -1")
        if not self.actor:
            raise ConfigError("actor must name a model: 'tiny', a hub id or a directory")

    @property
    def warm_start_steps(self) -> int:
        return (300 if self.actor == TINY else 0) if self.sft_steps == -1 else self.sft_steps


@dataclasses.dataclass
class ActorTrainingSettings:
    """The settings of the language agents that train their actor after the warm start (all but CHAI): its
    learning rate and its update steps per iteration. A config lists it before :class:`LanguageAgentConfig`
    in its bases (``class FilteredBCConfig(ActorTrainingSettings, LanguageAgentConfig)``)."""

    actor_lr: float = 1e-6
    actor_epochs: int = 3

    def validate(self) -> None:
        super().validate()  # type: ignore[misc]
        if self.actor_lr < 0 or self.actor_epochs < 0:
            raise ConfigError("actor_lr and actor_epochs must be >= 0")


class LanguageAgent(Agent):
    """An agent whose actor is a causal LM and whose env is a :class:`~zoo.envs.text.TextVecEnv`.

    ``learn(total_steps)`` counts turns (utterances) played; ``act(list[str]) -> list[str]``;
    ``evaluate`` reports *sampled* returns (greedy decoding tends to repeat one question).
    Agents implement ``_iteration(dialogues)`` (one update after a rollout), or ``_learn`` when they learn from
    data instead, and may override ``policy_step`` (how the agent plays); those that train their actor build
    ``actor_optimizer`` in ``_build``.
    """

    config_class = LanguageAgentConfig
    budget_unit = "dialogue turns"
    env_types = (TextVecEnv,)

    def _build(self) -> None:
        c = self.config
        self.rng = self.np_random  # the agent's own generator (seeded from seed, checkpointed)
        self.tokenizer = load_tokenizer(c.actor, self.env.game.vocabulary())
        lora = dict(r=c.lora_r, alpha=c.lora_alpha, dropout=c.lora_dropout, targets=c.lora_targets) if c.lora else None
        self.actor = load_actor(c.actor, self.tokenizer, seed=self.seed, tiny_layers=c.tiny_layers,
                                tiny_width=c.tiny_width, lora=lora).to(self.device).eval()
        self.stop_ids = newline_token_ids(self.tokenizer)
        #: the actor's optimizer, for the agents that train it (``actor_adam(c.actor_lr)`` in their ``_build``)
        self.actor_optimizer: torch.optim.Optimizer | None = None
        self.sft_done = False
        self.iteration = 0

    def actor_adam(self, lr: float) -> torch.optim.Optimizer:
        """An Adam over the actor's trainable weights (all of them, or the LoRA adapters)."""
        return adam([p for p in self.actor.parameters() if p.requires_grad], lr)

    def state_modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor}

    def state_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer} if self.actor_optimizer is not None else {}

    def extra_state(self) -> dict[str, Any]:
        return {"sft_done": self.sft_done, "iteration": self.iteration}

    #: the hyperparameters that name a pretrained model to load (checked when a checkpoint is loaded)
    model_fields: tuple[str, ...] = ("actor",)

    @classmethod
    def checked_model_paths(cls, path, hyperparameters: dict, models) -> dict:
        """Refuse a saved model spec that is a hub id or a directory outside the checkpoint's folder unless the
        caller passes it in ``models`` (``load(path, models={"actor": "gpt2"})``); the caller's specs win."""
        unknown = sorted(set(models) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"models= names {unknown}; {cls.__name__}'s model hyperparameters are "
                              f"{list(cls.model_fields)}")
        folder = Path(os.fspath(path)).expanduser().resolve().parent
        out = dict(hyperparameters)
        for name in cls.model_fields:
            spec = out.get(name)
            if name in models:
                out[name] = models[name]
            elif isinstance(spec, str) and spec not in (TINY, MINILM) and _inside(spec, folder):
                out[name] = str(_resolve(spec, folder))  # a relative path is relative to the checkpoint's folder
            elif isinstance(spec, str) and spec not in (TINY, MINILM):
                raise CheckpointError(
                    f"{path}: the checkpoint names the model {name}={spec!r}, a hub id or a directory outside the "
                    f"checkpoint's folder; zoo loads only what a checkpoint holds: pass "
                    f"{cls.__name__}.load(path, models={{{name!r}: {spec!r}}}) (or another path) to load it")
        return out

    # -- playing ----------------------------------------------------------------
    def sample(self, observations: list[str], temperature: float | None = None) -> Utterances:
        """One utterance per observation from the actor (the config's temperature unless given): texts and
        the token ids sampled."""
        c = self.config
        return sample_utterances(self.actor, self.tokenizer, list(observations), self.stop_ids,
                                 c.temperature if temperature is None else temperature, c.max_new_tokens)

    def policy_step(self, observations: list[str], deterministic: bool = False) -> Utterances:
        """What the agent says in each game, with the tokens sampled: a sample from the actor (greedy if
        ``deterministic``)."""
        return self.sample(observations, 0.0 if deterministic else None)

    def policy_utterances(self, observations: list[str], deterministic: bool = False) -> list[str]:
        """The texts of :meth:`policy_step`."""
        return self.policy_step(observations, deterministic).texts

    @with_own_randomness
    @torch.no_grad()
    def act(self, obs: list[str], deterministic: bool = False) -> list[str]:
        if isinstance(obs, str) or not all(isinstance(o, str) for o in obs):
            raise TypeError(f"{type(self).__name__}.act takes a list of observation strings")
        return self.policy_utterances(list(obs), deterministic)

    @with_own_randomness
    @torch.no_grad()
    def play(self, env: TextVecEnv, n: int, deterministic: bool = False) -> list[list[Turn]]:
        """``n`` whole dialogues on ``env``, in waves of ``env.num_envs`` games from a reset (finished games
        wait with empty utterances, which ask the oracle nothing, so no episode is cut short or counted twice)."""
        dialogues: list[list[Turn]] = []
        while len(dialogues) < n:
            k = min(env.num_envs, n - len(dialogues))
            obs = env.reset()
            active = [i < k for i in range(env.num_envs)]
            turns: list[list[Turn]] = [[] for _ in range(env.num_envs)]
            while any(active):
                playing = [i for i in range(env.num_envs) if active[i]]
                actions, token_ids = [""] * env.num_envs, [()] * env.num_envs
                said = self.policy_step([obs[i] for i in playing], deterministic)
                for j, i in enumerate(playing):
                    actions[i] = said.texts[j]
                    token_ids[i] = tuple(said.token_ids[j])
                next_obs, reward, terminated, truncated, info = env.step(actions)
                done, reward = (terminated | truncated).tolist(), reward.tolist()  # one device sync per step
                for i in playing:
                    turns[i].append(Turn(obs[i], actions[i], reward[i], info["final_obs"][i], done[i],
                                         token_ids[i]))
                    active[i] = not done[i]
                obs = next_obs
            dialogues += turns[:k]
        return dialogues

    def _act(self, obs: list[str], deterministic: bool) -> list[str]:
        return self.policy_utterances(list(obs), deterministic)

    def evaluate(self, n_episodes: int = 32, deterministic: bool = False, env: TextVecEnv | None = None,
                 seed: int | None = None) -> dict[str, float]:
        """Mean / std of the return, mean length and success rate over ``n_episodes`` dialogues on a fresh
        copy of the game (sampled utterances unless ``deterministic``: greedy decoding tends to repeat one
        question); the loop every agent evaluates with."""
        return super().evaluate(n_episodes, deterministic, env=env, seed=seed)

    def evaluation_env(self, n_episodes: int) -> TextVecEnv:
        """A fresh copy of the training game (its oracle included), up to ``num_envs`` games at a time."""
        return TextVecEnv(self.env.game, num_envs=min(n_episodes, self.config.num_envs), device=self.device)

    # -- training -----------------------------------------------------------------
    @with_own_randomness
    def behaviour_clone(self, dialogues: list[list[Turn]], steps: int, lr: float | None = None,
                        batch_size: int | None = None) -> list[float]:
        """Supervised fine-tuning of the actor on the utterances of ``dialogues`` (each followed by its ending
        newline, so that the actor learns to stop); returns the losses (mean token negative log-likelihood)."""
        turns = [t for d in dialogues for t in d if t.action]
        if not turns:
            raise ConfigError("behaviour cloning needs dialogues with at least one non-empty utterance")
        optimizer = self.actor_adam(lr or self.config.sft_lr)
        losses = []
        for _ in range(steps):
            loss = self.bc_loss(sample_turns(turns, batch_size or self.config.sft_batch_size, self.rng))
            loss.backward()
            self.clip_and_step(optimizer, self.actor)
            losses.append(float(loss.detach()))
        return losses

    def bc_loss(self, turns: list[Turn]) -> torch.Tensor:
        """Mean token negative log-likelihood of the turns' utterances and their ending newlines."""
        log_probs, mask = score_utterances(self.actor, self.tokenizer, [t.observation for t in turns],
                                           [t.action for t in turns], add_stop=True)
        return -(log_probs * mask).sum() / mask.sum().clamp(min=1)

    def warm_start_dialogues(self) -> list[list[Turn]]:
        """The warm start's data: a weak scripted player's dialogues on the agent's game."""
        c = self.config
        return weak_dialogues(self.env.game, c.sft_episodes, c.sft_guess_prob, seed=self.seed)

    def warm_start(self) -> None:
        """The behaviour-cloning warm start of the config (once per agent; a loaded agent keeps its own)."""
        c = self.config
        if not self.sft_done and c.warm_start_steps > 0:
            self.behaviour_clone(self.warm_start_dialogues(), c.warm_start_steps)
        self.sft_done = True

    def accumulate(self, minibatch_loss: Callable[[], torch.Tensor]) -> float:
        """Backpropagate ``grad_accum_steps`` minibatch losses, summed (``grad_accum="sum"``, the ArCHer
        reference) or each divided by their number (``"mean"``); returns their mean (the caller clips and steps)."""
        return accumulate_gradients(minibatch_loss, self.config)

    def clip_and_step(self, optimizer: torch.optim.Optimizer, module: nn.Module) -> float:
        """Clip the gradient norm of ``module`` to ``max_grad_norm`` (unless None), step, zero; returns the
        norm before clipping."""
        return clip_and_step_module(optimizer, module, self.config)

    def _iteration(self, dialogues: list[list[Turn]]) -> dict[str, float]:
        """One update after a rollout of ``dialogues``; returns metrics."""
        raise NotImplementedError

    def _learn(self, total_steps: int, report) -> None:
        self.warm_start()
        target = self.num_timesteps + total_steps
        while self.num_timesteps < target:
            start = time.perf_counter()
            dialogues = self.play(self.env, self.config.rollout_size)
            collect_s = time.perf_counter() - start
            self.num_timesteps += sum(len(d) for d in dialogues)
            metrics = self._iteration(dialogues)
            self.iteration += 1
            metrics.update(dialogue_stats(dialogues), iteration=self.iteration,
                           trajectories_per_s=len(dialogues) / max(collect_s, 1e-9))
            metrics.update(self.env.oracle_metrics())  # an LLM oracle's requests, retries, failures, latency
            if not report(metrics):
                return

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """The actor and its tokenizer as a Hugging Face directory (LoRA adapters merged into the weights),
        loadable as ``actor=directory`` by any language agent or by ``AutoModelForCausalLM.from_pretrained``.
        The tiny defaults apply to ``actor="tiny"`` only: pass the settings again with a directory."""
        directory = Path(directory).expanduser().resolve()
        actor = self.actor
        if hasattr(actor, "merge_and_unload"):  # LoRA: a plain model with the adapters merged, loadable alone
            actor = copy.deepcopy(actor).merge_and_unload()
        # written whole into a sibling folder, then swapped in: a crash leaves the old folder or the new one,
        # never a mix (at worst a leftover ".<name>.*" sibling, removed by the next save)
        directory.parent.mkdir(parents=True, exist_ok=True)
        for stale in directory.parent.iterdir():
            if stale.name.startswith(f".{directory.name}.") and stale.name.endswith((".writing", ".replaced")) \
                    and not _pid_alive(stale.name.rsplit(".", 2)[-2]):
                shutil.rmtree(stale, ignore_errors=True)
        staging = directory.parent / f".{directory.name}.{os.getpid()}.writing"
        shutil.rmtree(staging, ignore_errors=True)
        actor.save_pretrained(staging)
        self.tokenizer.save_pretrained(staging)
        replaced = directory.parent / f".{directory.name}.{os.getpid()}.replaced"
        if directory.exists():
            directory.rename(replaced)
        staging.rename(directory)
        shutil.rmtree(replaced, ignore_errors=True)
        return directory


def accumulate_gradients(minibatch_loss: Callable[[], torch.Tensor], config: LanguageAgentConfig) -> float:
    """Backpropagate ``config.grad_accum_steps`` losses of ``minibatch_loss()``, summed (``grad_accum="sum"``)
    or each divided by their number (``"mean"``); returns their mean (:meth:`LanguageAgent.accumulate`, and
    the held parts that train with the agent's settings)."""
    steps, total = config.grad_accum_steps, 0.0
    scale = 1.0 if config.grad_accum == "sum" else 1.0 / steps
    for _ in range(steps):
        loss = minibatch_loss()
        (loss * scale).backward()
        total += float(loss.detach())
    return total / steps


def clip_and_step_module(optimizer: torch.optim.Optimizer, module: nn.Module, config: LanguageAgentConfig) -> float:
    """Clip the gradient norm of ``module`` to ``config.max_grad_norm`` (unless None), step, zero; returns the
    norm before clipping."""
    limit = config.max_grad_norm
    norm = nn.utils.clip_grad_norm_(module.parameters(), float("inf") if limit is None else limit)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def dialogue_stats(dialogues: list[list[Turn]]) -> dict[str, float]:
    """``return_mean``, ``return_std``, ``length_mean``, ``success_rate`` (a game ends in a win when its last
    reward is 0) over dialogues."""
    returns = np.array([dialogue_return(d) for d in dialogues])
    return {"episodes": len(dialogues), "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "length_mean": float(np.mean([len(d) for d in dialogues])),
            "success_rate": float(np.mean([d[-1].reward == 0.0 and d[-1].done for d in dialogues]))}


def _resolve(spec: str, folder: Path) -> Path:
    """``spec`` as an absolute path, a relative one taken from ``folder`` (symlinks resolved)."""
    candidate = Path(spec).expanduser()
    return (candidate if candidate.is_absolute() else folder / candidate).resolve()


def _inside(spec: str, folder: Path) -> bool:
    """True if ``spec`` is a directory inside ``folder``."""
    try:
        resolved = _resolve(spec, folder)
        return resolved.is_dir() and resolved.is_relative_to(folder)
    except OSError:
        return False


def _pid_alive(text: str) -> bool:
    """True if ``text`` is the pid of a live process (a leftover of a live save is kept)."""
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
