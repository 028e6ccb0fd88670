"""MinAtar's five games as batched torch ops on any device (``torch/minatar-<game>``), equal to MinAtar 1.0.15.

See ``docs/envs/torch-minatar.md`` for the ids, spaces, how equality with
MinAtar is tested, and the few deviations.
"""

from zoo.envs.torch_minatar.asterix import AsterixTorch
from zoo.envs.torch_minatar.base import MinAtarTorchEnv
from zoo.envs.torch_minatar.breakout import BreakoutTorch
from zoo.envs.torch_minatar.freeway import FreewayTorch
from zoo.envs.torch_minatar.seaquest import SeaquestTorch
from zoo.envs.torch_minatar.space_invaders import SpaceInvadersTorch

#: task name under the ``torch`` suite -> env class
TORCH_MINATAR = {f"minatar-{cls.game}": cls for cls in
                 (AsterixTorch, BreakoutTorch, FreewayTorch, SeaquestTorch, SpaceInvadersTorch)}

__all__ = ["MinAtarTorchEnv", "AsterixTorch", "BreakoutTorch", "FreewayTorch", "SeaquestTorch",
           "SpaceInvadersTorch", "TORCH_MINATAR"]
