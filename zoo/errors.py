"""Exceptions raised by zoo. Each names the problem and, where there is one, the fix."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error zoo raises on purpose."""


class UnknownEnvError(ZooError, KeyError):
    """An environment id (or suite) that zoo does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingExtraError(ZooError, ImportError):
    """A suite or feature whose optional dependencies are not installed."""

    def __init__(self, feature: str, extra: str, cause: BaseException | None = None):
        self.feature, self.extra = feature, extra
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        super().__init__(
            f"{feature} needs the '{extra}' extra, which is not installed{detail}. "
            f'Install it with: pip install "zoo-rl[{extra}]"'
        )


class ActionError(ZooError, ValueError):
    """Actions passed to ``VecEnv.step`` of the wrong type, shape, dtype, device or range."""


class CheckpointError(ZooError, ValueError):
    """A checkpoint that is missing, corrupt, or not a zoo checkpoint."""


class CheckpointConfigError(CheckpointError, TypeError):
    """A config or state tree holding something that cannot be stored in a checkpoint (names where)."""


class TrajectoryError(ZooError, ValueError):
    """Bad input to a trajectory store (shapes, dtypes, lengths, sampling requests)."""


class PreferenceDatasetError(ZooError, ValueError):
    """A preference dataset (arrays or file) that is inconsistent, corrupt or not a zoo dataset."""


class ConfigError(ZooError, ValueError):
    """Invalid hyperparameters or configuration values."""
