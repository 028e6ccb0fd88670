"""Renamed hyperparameters: checkpoints saved under an old name load with the value converted, and the old
name given now is a :class:`~zoo.errors.ConfigError` that names the new one.

A config lists its renames in ``RENAMED`` (old name -> :class:`Rename`) and puts
:class:`RenamedHyperparameters` before its base in its bases, e.g.
``class GBRLConfig(RenamedHyperparameters, PPOConfig)``.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import Any, Callable, Mapping

from zoo.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Rename:
    """``new``: today's name; ``convert``: today's value from the saved old one; ``how``: the conversion in
    words, for the messages."""

    new: str
    convert: Callable[[Any], Any]
    how: str


class RenamedHyperparameters:
    """Mixin for an :class:`~zoo.agents.config.AgentConfig` subclass whose hyperparameters were renamed."""

    RENAMED: typing.ClassVar[dict[str, Rename]] = {}

    @classmethod
    def upgrade_saved(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The base's upgrade, then each old name's saved value converted to its new name (one warning each)."""
        values = super().upgrade_saved(hyperparameters)  # type: ignore[misc]
        for old, rename in cls.RENAMED.items():
            if old in values:
                value = values.pop(old)
                values[rename.new] = rename.convert(value)
                warnings.warn(f"this {_agent(cls)} checkpoint saved {old}={value!r}, now "
                              f"{rename.new}={values[rename.new]!r} ({rename.how})", stacklevel=3)
        return values

    @classmethod
    def check_keys(cls, keys) -> None:
        """The base's check, after refusing the old names with the new one named."""
        for key in keys:
            if key in cls.RENAMED:
                rename = cls.RENAMED[key]
                raise ConfigError(f"hyperparameter {key!r} of {_agent(cls)} is now {rename.new!r} "
                                  f"({rename.how}); pass {rename.new}= instead")
        super().check_keys(keys)  # type: ignore[misc]


def _agent(config_class: type) -> str:
    return config_class.__name__.removesuffix("Config")
