"""Name -> function registries with parameter checking.

Objectives, advantage estimators and corrections are registered by name. A registered
function takes its tensors positionally or by keyword and its parameters as keyword-only
arguments; the keyword-only defaults are the method's documented defaults. ``call`` rejects
unknown names and parameters with a ``ValueError`` that lists the valid ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

#: An ``old_logit_defaults`` value: the parameter has no default for this method, the run must set it.
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Entry:
    """One registered method: its function, paper, summary and default parameters.

    ``common`` holds the parameters every entry of the registry accepts (e.g. ``aggregation``)
    with their registry-wide defaults; ``fixed`` holds parameters a preset pins (e.g. ``dapo``
    pins ``clip_high=0.28``). Both may still be overridden by the caller. ``requires`` names the optional
    input fields the method cannot run without (e.g. ``("ref_logp",)``): a caller that owns models loads
    what they need, and ``fn`` raises a ``ValueError`` naming a field that is ``None``. ``experimental``
    marks a method whose form is inferred: a run must opt in (``algo.experimental``). ``inputs`` names the
    keyword arguments of ``fn`` that are batch data a caller must supply (e.g. ``("rewards", "group_ids")``,
    ``("scores",)``, ``("greedy_rewards",)``) rather than parameters with documented defaults; a caller hands
    a method exactly the inputs it declares. ``binds_old_logits`` names the old-logit strategy that must
    produce the method's ``prox_logp`` (``None``: any); ``old_logit_defaults`` gives that strategy's
    parameters the defaults this method needs (:data:`REQUIRED`: none, the run must set it).
    ``parts`` names the learner parts (learner hooks, :mod:`ratiolab.learner.hooks`) the method runs with,
    e.g. ``critic`` (a value critic that gives the advantages and adds its value loss), ``replay`` (a replay
    window with its schedule), ``clip_bias_norm`` (a first gradient pass that measures the clipping-bias
    norm). ``state`` makes the method's explicit state (:class:`ratiolab.objectives.state.ObjectiveState`)
    from its parameters (``None``: stateless). ``batch_params(inputs, log_r, params) -> dict`` computes
    parameters shared by all micro-batches of one optimiser step from the whole batch (M2PO's cutoff).
    ``reward_components``: an advantage estimator whose ``rewards`` may be a task's ``[B, K]`` reward
    components.
    """

    name: str
    fn: Callable[..., Any]
    arxiv: str
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    common: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    experimental: bool = False
    inputs: tuple[str, ...] = ()
    binds_old_logits: str | None = None
    parts: tuple[str, ...] = ()
    state: Callable[..., Any] | None = None
    batch_params: Callable[..., dict[str, Any]] | None = None
    reward_components: bool = False
    old_logit_defaults: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def _params(self) -> dict[str, Any]:
        out = dict(self.common)
        out.update(_kwonly(self.fn))
        out.update(self.fixed)
        return out

    @cached_property
    def _defaults(self) -> dict[str, Any]:
        return {k: v for k, v in self._params.items() if v is not inspect.Parameter.empty}

    @property
    def params(self) -> dict[str, Any]:
        """Accepted parameters and their effective defaults (``inspect.Parameter.empty`` if required)."""
        return dict(self._params)

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self._defaults)


class Registry:
    """A named collection of :class:`Entry` objects of one kind (``"objective"``, ...)."""

    def __init__(self, kind: str, common: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.common = dict(common or {})
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, arxiv: str, summary: str, fixed: Mapping[str, Any] | None = None,
        requires: tuple[str, ...] = (), experimental: bool = False, inputs: tuple[str, ...] = (),
        binds_old_logits: str | None = None, parts: tuple[str, ...] = (), **declared: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``fn`` under ``name`` (``declared``: further :class:`Entry` fields, as in ``add``)."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, fn, arxiv=arxiv, summary=summary, fixed=fixed, requires=requires, experimental=experimental,
                     inputs=inputs, binds_old_logits=binds_old_logits, parts=parts, **declared)
            return fn

        return deco

    def add(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        arxiv: str,
        summary: str,
        fixed: Mapping[str, Any] | None = None,
        requires: tuple[str, ...] = (),
        experimental: bool = False,
        inputs: tuple[str, ...] = (),
        binds_old_logits: str | None = None,
        parts: tuple[str, ...] = (),
        state: Callable[..., Any] | None = None,
        batch_params: Callable[..., dict[str, Any]] | None = None,
        reward_components: bool = False,
        old_logit_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """Register ``fn`` (or a preset of it, with ``fixed`` parameters) under ``name``; ``requires``: the
        input fields (attributes of the first argument) that must not be ``None``; ``inputs``: the keyword
        arguments that are batch data (each must be a keyword-only argument of ``fn``); the other keywords
        are the :class:`Entry` declarations of the same name."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        checked = _requiring(self.kind, name, fn, tuple(requires)) if requires else fn
        entry = Entry(name, checked, arxiv, summary, dict(fixed or {}), self.common, tuple(requires), experimental,
                      tuple(inputs), binds_old_logits, tuple(parts), state=state, batch_params=batch_params,
                      reward_components=reward_components, old_logit_defaults=dict(old_logit_defaults or {}))
        unknown = set(entry.fixed) - set(_kwonly(fn)) - set(self.common)
        if unknown:
            raise ValueError(f"preset {name!r} fixes unknown parameters {sorted(unknown)}")
        undeclared = sorted(set(entry.inputs) - set(_kwonly(fn)))
        if undeclared:
            raise ValueError(f"{self.kind} {name!r} declares inputs {undeclared} that are not keyword-only "
                             "arguments of its function")
        self._entries[name] = entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries))}"
            ) from None

    def resolve(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """All parameters of ``name``: ``params`` merged over the entry's defaults."""
        entry = self.get(name)
        valid = entry._params
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r} got unknown parameter(s) {unknown}; "
                f"valid parameters: {', '.join(sorted(valid))}"
            )
        merged = {**entry._defaults, **params}
        missing = sorted(k for k in valid if k not in merged)
        if missing:
            raise ValueError(f"{self.kind} {name!r} requires parameter(s) {missing}")
        return merged

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)


def _requiring(kind: str, name: str, fn: Callable[..., Any], fields: tuple[str, ...]) -> Callable[..., Any]:
    """``fn`` that first raises a ``ValueError`` when a field of ``fields`` of its first argument is ``None``."""

    @functools.wraps(fn)
    def checked(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        missing = [f for f in fields if getattr(inputs, f, None) is None]
        if missing:
            raise ValueError(f"{kind} {name!r} needs {', '.join(f'inputs.{f}' for f in missing)} (got None): "
                             f"this {kind} cannot run without it")
        return fn(inputs, *args, **kwargs)

    return checked


def _kwonly(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword-only parameters of ``fn`` and their defaults."""
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
