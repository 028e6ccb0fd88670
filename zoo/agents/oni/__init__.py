"""ONI (Zheng et al., 2024): online intrinsic rewards from an LLM's feedback on NetHack messages.

The agent (:class:`ONI`, on the APPO learner), its annotators (:mod:`zoo.agents.oni.annotator`), reward models
(:mod:`zoo.agents.oni.rewards`, :mod:`zoo.agents.oni.ellm`), their losses (:mod:`zoo.agents.oni.losses`), the
per-episode message counts (:mod:`zoo.agents.oni.counts`) and the ranking pair pool (:mod:`zoo.agents.oni.pairs`).
"""

from zoo.agents.oni.agent import ONI, ONIConfig
from zoo.agents.oni.annotator import Annotations, Annotator, KeywordAnnotator, OpenAIAnnotator, TransformersAnnotator
from zoo.agents.oni.counts import MessageCounter
from zoo.agents.oni.ellm import BagOfWordsReward
from zoo.agents.oni.losses import bradley_terry_loss, classification_loss, intrinsic_reward
from zoo.agents.oni.messages import decode_message, encode_message, message_key
from zoo.agents.oni.pairs import PairPool
from zoo.agents.oni.rewards import (
    ClassificationReward,
    RankingReward,
    RetrievalReward,
    RewardModel,
    make_reward_model,
    steps_for_iteration,
)

__all__ = [
    "ONI",
    "Annotations",
    "Annotator",
    "BagOfWordsReward",
    "ClassificationReward",
    "KeywordAnnotator",
    "MessageCounter",
    "ONIConfig",
    "OpenAIAnnotator",
    "PairPool",
    "RankingReward",
    "RetrievalReward",
    "RewardModel",
    "TransformersAnnotator",
    "bradley_terry_loss",
    "classification_loss",
    "decode_message",
    "encode_message",
    "intrinsic_reward",
    "make_reward_model",
    "message_key",
    "steps_for_iteration",
]
