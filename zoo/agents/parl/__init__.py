"""PARL: policy alignment as bilevel reward learning (A-PARL, Chakraborty et al., ICLR 2024), with PEBBLE.

``reward_model`` holds PEBBLE's reward ensemble, its Bradley-Terry loss and query selection; ``entropy``
the k-NN state-entropy reward of PEBBLE's unsupervised pre-training; ``hypergradient`` A-PARL's upper-level
gradient (conjugate gradient and Neumann series over Hessian-vector products); ``tabular`` the exact
small-MDP check of it; ``barfi`` BARFI (Gupta et al., 2023: a learned reward and discount
aligned to the true return through the same implicit gradient) on the tabular GridWorld of ``barfi_gridworld``;
``family`` the loop PEBBLE and A-PARL share (SAC on the learned reward), ``pebble``
and ``agent`` the two agents. B-Pref's scripted teachers are :class:`zoo.datasets.teachers.ScriptedTeacher`.
"""

from zoo.agents.parl.agent import PARL, PARLConfig
from zoo.agents.parl.barfi import (
    BARFI_METHODS,
    BarfiConfig,
    aligned_reward,
    barfi_gradient,
    discounted_returns,
    learned_discount,
    reinforce_objective,
    run_barfi,
)
from zoo.agents.parl.barfi_gridworld import GridWorld, gridworld
from zoo.agents.parl.entropy import StateEntropy, knn_distances, state_entropy_reward
from zoo.agents.parl.family import PreferenceSAC, PreferenceSACConfig, spearman
from zoo.agents.parl.hypergradient import (
    Hypergradient,
    Solve,
    conjugate_gradient,
    hessian_vector_product,
    hypergradient,
    l2_regularised,
    largest_eigenvalue,
    mixed_vector_product,
    neumann_series,
    power_iteration,
    score_function_surrogate,
)
from zoo.agents.parl.pebble import PEBBLE, PEBBLEConfig
from zoo.agents.parl.reward_model import (
    QUERY_MODES,
    EnsembleMLP,
    PreferenceStore,
    RewardEnsemble,
    RewardModelConfig,
    bradley_terry_loss,
    disagreement,
    preference_probability,
    select_queries,
)

__all__ = [
    "BARFI_METHODS",
    "PARL",
    "PEBBLE",
    "QUERY_MODES",
    "BarfiConfig",
    "EnsembleMLP",
    "GridWorld",
    "Hypergradient",
    "PARLConfig",
    "PEBBLEConfig",
    "PreferenceSAC",
    "PreferenceSACConfig",
    "PreferenceStore",
    "RewardEnsemble",
    "RewardModelConfig",
    "Solve",
    "StateEntropy",
    "aligned_reward",
    "barfi_gradient",
    "bradley_terry_loss",
    "conjugate_gradient",
    "disagreement",
    "discounted_returns",
    "gridworld",
    "hessian_vector_product",
    "hypergradient",
    "knn_distances",
    "l2_regularised",
    "learned_discount",
    "mixed_vector_product",
    "neumann_series",
    "power_iteration",
    "largest_eigenvalue",
    "preference_probability",
    "reinforce_objective",
    "run_barfi",
    "score_function_surrogate",
    "select_queries",
    "spearman",
    "state_entropy_reward",
]
