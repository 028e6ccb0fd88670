"""PEBBLE's unsupervised pre-training reward: a particle estimate of the state entropy, the distance from each
state to its k-th nearest neighbour among the replay buffer's states (k = 5), divided by a running standard
deviation of those distances (Lee et al., 2021, PEBBLE, section 4.1, eqs. 3-4; as rll-research/BPref's
``compute_state_entropy`` and ``update_critic_state_ent``, which drop the paper's ``log(c + .)``)."""

from __future__ import annotations

import torch
from torch import nn

from zoo.agents.normalize import RunningMeanStd
from zoo.errors import ConfigError

__all__ = ["StateEntropy", "knn_distances", "state_entropy_reward"]


@torch.no_grad()
def knn_distances(states: torch.Tensor, reference: torch.Tensor, k: int = 5, *, states_in_reference: bool = True,
                  chunk_size: int = 4096) -> torch.Tensor:
    """Euclidean distance from each of ``states (N, ...)`` to its ``k``-th nearest neighbour in ``reference
    (M, ...)``: ``(N,)``, computed over chunks of both (memory ``chunk_size^2``), on their device.

    With ``states_in_reference`` (B-Pref: a batch drawn from the buffer it is compared with) each state's zero
    distance to itself is not a neighbour: the ``(k + 1)``-th smallest distance is taken, as B-Pref's
    ``kthvalue(k + 1)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    rank = k + 1 if states_in_reference else k
    x = states.reshape(states.shape[0], -1).float()
    ref = reference.reshape(reference.shape[0], -1).float().to(x.device)
    if x.shape[1] != ref.shape[1]:
        raise ConfigError(f"states have {x.shape[1]} features but the reference states {ref.shape[1]}")
    if ref.shape[0] < rank:
        raise ConfigError(f"the {k}-th nearest neighbour needs at least {rank} reference states, got {ref.shape[0]}")
    out = torch.empty(x.shape[0], device=x.device)
    for i in range(0, x.shape[0], chunk_size):
        q = x[i:i + chunk_size]
        best = torch.empty(q.shape[0], 0, device=x.device)
        for j in range(0, ref.shape[0], chunk_size):
            d = torch.cdist(q, ref[j:j + chunk_size], compute_mode="donot_use_mm_for_euclid_dist")
            best = torch.cat([best, d], dim=1).topk(min(rank, best.shape[1] + d.shape[1]), dim=1, largest=False).values
        out[i:i + q.shape[0]] = best[:, rank - 1]
    return out


def state_entropy_reward(knn: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """PEBBLE's intrinsic reward as its reference code computes it, ``r_int(s) = ||s - s^k|| / std``: the k-NN
    distance (PEBBLE eq. 4 writes ``log(c + ||s - s^k||)``; the code drops the log) over a running std."""
    return knn / std


class StateEntropy(nn.Module):
    """The normalised k-NN state-entropy reward with its running statistics (buffers: tensors only).

    ``forward(states, reference)`` computes :func:`knn_distances`, updates the running mean and variance with
    them and returns them divided by the running std (B-Pref's order: update, then normalise); with
    ``normalize=False`` the raw distances.
    """

    def __init__(self, k: int = 5, normalize: bool = True):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        self.k, self.normalize = k, normalize
        self.stats = RunningMeanStd(())

    @torch.no_grad()
    def forward(self, states: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        knn = knn_distances(states, reference, self.k)
        self.stats.update(knn)
        if not self.normalize:
            return knn
        return state_entropy_reward(knn, self.stats.var.sqrt().to(knn.dtype))
