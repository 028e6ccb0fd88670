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


class NumericalError(ZooError, ArithmeticError):
    """Training produced a non-finite loss or parameter; names the agent, the step, the term and the last good
    checkpoint."""


class LLMError(ZooError, RuntimeError):
    """An LLM back-end (an OpenAI-compatible server) that failed a request; each subclass names one cause and its
    fix. ``endpoint`` is the URL, ``attempts`` how many tries were made."""

    def __init__(self, message: str, endpoint: str = "", attempts: int = 0):
        super().__init__(message)
        self.endpoint, self.attempts = endpoint, attempts


class LLMConnectionError(LLMError):
    """The server could not be reached (connection refused or reset): it is not running or the URL is wrong."""


class LLMTimeoutError(LLMError):
    """The server did not finish a reply within the request's deadline (a hung or overloaded server)."""


class LLMAuthError(LLMError):
    """The server refused the credentials (HTTP 401 / 403): the API key is missing or wrong. Not retried."""


class LLMRateLimitError(LLMError):
    """The server kept answering HTTP 429 (rate limited) through every retry."""


class LLMServerError(LLMError):
    """The server kept failing with HTTP 5xx through every retry."""


class LLMBadRequestError(LLMError):
    """The server rejected the request (HTTP 400 / 404 / 422: unknown model, bad parameters). Not retried."""


class LLMResponseError(LLMError):
    """The server answered something that is not an OpenAI-style completion (not JSON, or no text in it)."""
