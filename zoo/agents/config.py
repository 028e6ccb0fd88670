"""Typed hyperparameter dataclasses: validation, string overrides, presets per task family."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from zoo.errors import ConfigError

#: ``Optional[X]`` / ``Union[X, Y]`` and the ``X | Y`` form (PEP 604)
_UNIONS = (typing.Union, types.UnionType)


@dataclasses.dataclass
class AgentConfig:
    """Base of every agent's hyperparameters. Subclasses add typed fields with the paper's defaults."""

    #: env-id patterns (fnmatch) -> hyperparameter overrides tuned for that task family.
    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {}
    #: fields added after checkpoints were first written -> the behaviour they had before (what an older
    #: checkpoint was trained with); each class lists its own, :meth:`upgrade_saved` gathers them
    LEGACY_DEFAULTS: typing.ClassVar[dict[str, Any]] = {}
    #: fields that older checkpoints of this agent carry and that it no longer has (dropped on load)
    REMOVED_FIELDS: typing.ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(f.name, value, hints[f.name])
            object.__setattr__(self, f.name, coerced)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range (subclasses extend)."""

    # -- construction -----------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def check_keys(cls, keys) -> None:
        names = cls.field_names()
        for key in keys:
            if key in cls.REMOVED_FIELDS:
                raise ConfigError(f"{cls.__name__.removesuffix('Config')} no longer has the hyperparameter {key!r} "
                                  f"(a setting it never used; older checkpoints that carry it still load): "
                                  f"drop it")
            if key not in names:
                close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown hyperparameter {key!r} for {cls.__name__}.{hint} "
                                  f"Known: {', '.join(names)}")

    @classmethod
    def preset_for(cls, env_id: str | None) -> dict[str, Any]:
        """The overrides of the first preset whose pattern matches ``env_id`` (empty if none)."""
        if env_id:
            for pattern, overrides in cls.PRESETS.items():
                if fnmatch.fnmatchcase(env_id, pattern):
                    return dict(overrides)
        return {}

    @classmethod
    def create(cls, env_id: str | None = None, **overrides) -> AgentConfig:
        """Defaults, then the task family's preset, then ``overrides`` (validated)."""
        cls.check_keys(overrides)
        values = cls.preset_for(env_id)
        values.update(overrides)
        return cls(**cls.fill_defaults(values, overrides))

    @classmethod
    def fill_defaults(cls, values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other values (e.g. CPU-sized settings for a tiny model), filled in after the
        preset and the ``overrides`` (both in ``values``; the overrides are also given apart, since they must
        win); the base fills none."""
        return values

    @classmethod
    def upgrade_saved(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """A checkpoint's saved hyperparameters with the fields it predates set to their old behaviour (not
        to today's defaults or presets), so that a loaded run goes on as it was trained."""
        legacy: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            legacy.update(vars(klass).get("LEGACY_DEFAULTS", {}))
        saved = {k: v for k, v in hyperparameters.items() if k not in cls.REMOVED_FIELDS}
        return {**{k: v for k, v in legacy.items() if k in cls.field_names()}, **saved}

    @classmethod
    def parse_overrides(cls, items: list[str]) -> dict[str, Any]:
        """``["lr=1e-3", "hidden=64,64"]`` -> typed values, with clear errors for unknown keys or bad values."""
        hints = typing.get_type_hints(cls)
        out = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"overrides look like key=value, got {item!r}")
            key, text = item.split("=", 1)
            key = key.strip().replace("-", "_")
            cls.check_keys([key])
            out[key] = _parse(key, text.strip(), hints[key])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentConfig:
        cls.check_keys(data)
        return cls(**data)

    def replace(self, **changes) -> AgentConfig:
        self.check_keys(changes)
        return dataclasses.replace(self, **changes)


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(name: str, value: Any, tp) -> Any:
    """Check ``value`` against the annotation ``tp``; widen int -> float and list -> tuple."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNIONS:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"hyperparameter {name!r} must be {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"hyperparameter {name!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"hyperparameter {name!r} must be a sequence of {_type_name(args[0])}, got {value!r}")
        return tuple(_coerce(name, v, args[0]) for v in value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"hyperparameter {name!r} must be a number, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value):
            raise ConfigError(f"hyperparameter {name!r} must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"hyperparameter {name!r} must be an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"hyperparameter {name!r} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"hyperparameter {name!r} must be a string, got {value!r}")
        return value
    return value


def _parse(name: str, text: str, tp) -> Any:
    """Parse a command-line value for a field annotated ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNIONS and type(None) in args and text.lower() in ("none", "null"):
        return None
    if origin in _UNIONS:
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    try:
        if origin is tuple:
            body = text.strip("[]() ")
            return tuple(_parse(name, part.strip(), args[0]) for part in body.split(",") if part.strip())
        if tp is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if tp is float:
            return float(text)
        if tp is str or origin is typing.Literal:
            return text
        return json.loads(text)
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"hyperparameter {name!r} expects {_type_name(tp)}, got {text!r}") from None


def positive(config: AgentConfig, *names: str) -> None:
    """Raise ConfigError unless every named field is > 0."""
    for name in names:
        if not getattr(config, name) > 0:  # NaN too
            raise ConfigError(f"hyperparameter {name!r} must be positive, got {getattr(config, name)!r}")


def valid_hidden(config: AgentConfig, name: str = "hidden") -> None:
    """Raise ConfigError unless the named layer-size tuple is non-empty with positive sizes."""
    sizes = getattr(config, name)
    if not sizes or any(h <= 0 for h in sizes):
        raise ConfigError(f"hyperparameter {name!r} must list at least one positive layer size, got {sizes!r}")


def non_negative(config: AgentConfig, *names: str) -> None:
    """Raise ConfigError unless every named field is >= 0."""
    for name in names:
        if not getattr(config, name) >= 0:  # NaN too
            raise ConfigError(f"hyperparameter {name!r} must be >= 0, got {getattr(config, name)!r}")


def positive_or_none(config: AgentConfig, *names: str) -> None:
    """Raise ConfigError unless every named field is None (off) or > 0."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ConfigError(f"hyperparameter {name!r} must be positive (or None: off), got {value!r}")


def one_of(config: AgentConfig, name: str, choices) -> None:
    """Raise ConfigError unless the named field is one of ``choices``."""
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(f"hyperparameter {name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def in_unit_interval(config: AgentConfig, *names: str) -> None:
    """Raise ConfigError unless every named field lies in [0, 1]."""
    for name in names:
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"hyperparameter {name!r} must lie in [0, 1], got {getattr(config, name)!r}")
