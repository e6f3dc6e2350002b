"""Typed dataclass configs: strict construction from dicts/YAML and ``key=value`` overrides.

Every config is a (possibly nested) dataclass with documented defaults. ``from_dict`` rejects
unknown keys, values of the wrong type and non-finite floats (NaN, inf) with an error that names the
field, lists the valid ones and says how to fix it; ``check_fields`` applies the same checks to a config
built in Python; ``override(cfg, ["learner.lr=1e-4"])`` applies CLI ``--set`` flags; ``check_range``
states a field's valid interval. The language-model run's configs are in :mod:`ratiolab.config.train`
(:class:`TrainConfig`) and :mod:`ratiolab.config.async_rl` (:class:`AsyncConfig`); this module imports neither.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the field and the fix."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a dataclass config (for YAML)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build ``cls`` from ``data``, recursing into nested dataclasses; unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys here: {sorted(fields)}"
        )
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def check_fields(cfg: Any, prefix: str = "") -> None:
    """The checks of :func:`from_dict` (types, finite floats, choices) on a config built in Python."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, prefix + f.name + ".")
        else:
            _coerce(hints[f.name], value, prefix + f.name)


def check_range(name: str, value: float, interval: str, hint: str = "") -> None:
    """Raise a ``ConfigError`` unless ``value`` lies in ``interval``, written ``"(0, 1]"``, ``"[0, inf)"``..."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    if not (above and below):
        raise ConfigError(f"{name} = {value!r} must be in {interval}" + (f" ({hint})" if hint else ""))


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``; a syntax error becomes a one-line ``ConfigError`` naming ``source`` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}:{where} is not valid YAML ({problem}); fix the syntax") from err


def load_yaml(cls: type[T], path: str | Path) -> T:
    """``cls`` from the YAML file ``path``; errors name the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; pass the path of a YAML file")
    data = parse_yaml(p.read_text(), f"config file {p}")
    try:
        return from_dict(cls, {} if data is None else data)
    except ConfigError as err:
        raise ConfigError(f"config file {p}: {err}") from err


def override(cfg: T, assignments: Iterable[str]) -> T:
    """Apply ``dotted.key=value`` assignments (values parsed as YAML scalars) to a copy of ``cfg``.

    A key walks config sections, then any depth of a free-form ``dict`` field, whose keys it may add:
    ``algo.objective_params.clip_low=0.1``, ``task.params.level=2``.
    """
    data = to_dict(cfg)
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set learner.lr=1e-4")
        node, section = data, typing.cast("type | None", type(cfg))
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if section is not None:  # a dataclass section: its fields only
                hint = typing.get_type_hints(section).get(part) if part in node else None
                free = typing.get_origin(hint) is dict or hint is dict
                if not (free or (dataclasses.is_dataclass(hint) and isinstance(node[part], dict))):
                    raise ConfigError(f"--set {item!r}: {where} is not a config section"
                                      + ("" if part in node else f"; valid keys here: {sorted(node)}"))
                section = None if free else typing.cast(type, hint)
            elif not isinstance(node.setdefault(part, {}), dict):  # inside a free-form dict
                raise ConfigError(f"--set {item!r}: {where} holds {node[part]!r}, not a mapping")
            node = node[part]
        if section is not None and parts[-1] not in node:
            raise ConfigError(f"--set {item!r}: unknown key {key!r}; valid keys here: {sorted(node)}")
        value = parse_yaml(raw, f"--set {item!r}")
        glued = [k for k, v in value.items() if v is None and ":" in str(k)] if isinstance(value, dict) else []
        if glued:
            raise ConfigError(f"--set {item!r}: {glued[0]!r} reads as one key; YAML needs a space after the colon, "
                              f"e.g. {{{str(glued[0]).replace(':', ': ', 1)}}}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, name)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, prefix=name + ".")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{name} = {value!r} is not one of {list(choices)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(inner, v, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a mapping such as {{key: value}}, got {value!r}")
        _no_nan(value, name)
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{name} = {value!r} is not a finite number; give a finite float")
            return number
    if (isinstance(tp, type) and not isinstance(value, tp)) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {getattr(tp, '__name__', tp)}, got {value!r}; fix the value")
    return value


def _no_nan(value: Any, name: str) -> None:
    """Free-form parameters (``dict`` fields) hold no NaN at any depth (inf may mean "no limit": allowed)."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{name} = nan is not a number; give a number")
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _no_nan(item, f"{name}.{key}" if isinstance(value, Mapping) else f"{name}[{key}]")
