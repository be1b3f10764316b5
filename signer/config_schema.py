"""Checks every config key against its dataclass field: one mechanism for every section.

The field's annotation is its type (``int`` is not ``bool``; ``float`` takes an ``int``; ``str``;
an enum by value; ``tuple[X, ...]`` from an array; ``dict[str, X]`` from a table; a nested
dataclass from a table or, in a tuple, an array of tables). The field's ``metadata`` holds its
rules (:func:`rules`), declared next to the field in ``signer/config.py``. A key of the wrong type,
out of range or unknown is a :class:`ConfigError` naming the file, ``[section] key``, what was
given and what is expected (issue 9 §10); nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signer.errors import ConfigError

_RULES = "config_rules"


@dataclass(frozen=True, slots=True)
class Rule:
    """A test on a value and the words for what it expects, e.g. ``0..65535``."""

    expected: str
    test: Callable[[Any], bool]
    each: bool = False  # applies to each element of an array / each value of a table
    keys: bool = False  # applies to each key of a table

    def failing(self, value: Any) -> tuple[str, Any] | None:
        """The (key, value) that breaks the rule, key "" for the value itself or an array's
        element; None when nothing does."""
        if not (self.each or self.keys):
            return None if self.test(value) else ("", value)
        if isinstance(value, Mapping):
            parts = [(k, k if self.keys else v) for k, v in value.items()]
        else:
            parts = [("", v) for v in value]
        return next(((k, v) for k, v in parts if not self.test(v)), None)


def rules(*checks: Rule) -> dict[str, tuple[Rule, ...]]:
    """``field(metadata=rules(...))``: the rules of one config key."""
    return {_RULES: checks}


def between(low: float, high: float, note: str = "") -> Rule:
    return Rule(_with_note(f"{_num(low)}..{_num(high)}", note), lambda v: low <= v <= high)


def at_least(low: float, note: str = "") -> Rule:
    return Rule(_with_note(f"≥ {_num(low)}", note), lambda v: v >= low)


def above(low: float, note: str = "") -> Rule:
    return Rule(_with_note(f"> {_num(low)}", note), lambda v: v > low)


def one_of(*choices: str) -> Rule:
    return Rule("one of " + ", ".join(json.dumps(c) for c in choices), lambda v: v in choices)


def matching(pattern: str, what: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(what, lambda v: compiled.fullmatch(v) is not None)


def non_empty(what: str = "at least one entry") -> Rule:
    return Rule(what, lambda v: len(v) > 0)


def each(rule: Rule) -> Rule:
    """``rule`` for every element of an array, or every value of a table."""
    return dataclasses.replace(rule, each=True)


def each_key(rule: Rule) -> Rule:
    """``rule`` for every key of a table."""
    return dataclasses.replace(rule, keys=True)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _with_note(text: str, note: str) -> str:
    return f"{text} ({note})" if note else text


def show(value: Any) -> str:
    """A value as it reads in TOML, cut short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = str(value)  # TOML writes inf, -inf, nan
    elif isinstance(value, enum.Enum):
        text = json.dumps(value.value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def _toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (a key a file spelled
    ``"a\\nb" = 1`` must not break the one-line message)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


class Where:
    """Where a value sits, for messages: ``signer.toml: [server] port``."""

    def __init__(self, source: str, table: str, key: str = "") -> None:
        self.source, self.table, self.key = source, table, key

    def at(self, key: str) -> Where:
        return Where(self.source, self.table, key)

    def inner(self, key: str) -> Where:
        """A nested table: ``[issuer.validity_days]``."""
        return Where(self.source, f"{self.table}.{key}" if self.table else key)

    def __str__(self) -> str:
        place = f"[{self.table}]" if not self.table.startswith("[") else self.table
        return f"{self.source}: {place}{' ' + _toml_key(self.key) if self.key else ''}"

    def error(self, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self} = {show(value)}: expected {expected}")


def build(cls: type[Any], table: Mapping[str, Any], where: Where, base: Any = None) -> Any:
    """An instance of the dataclass ``cls`` from a TOML table: ``base`` (or the defaults) with
    the table's keys, each converted to its field's type; rules are :func:`check`'s job."""
    if not isinstance(table, Mapping):
        raise where.error(table, "a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})"
        )
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in table.items():
        current = getattr(base, name) if base is not None else None
        values[name] = convert(hints[name], value, where.at(name), current)
    if base is not None:
        return _construct(lambda: dataclasses.replace(base, **values), where)
    missing = [
        f.name
        for f in known.values()
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    return _construct(lambda: cls(**values), where)


def _construct(make: Callable[[], Any], where: Where) -> Any:
    """``__post_init__`` checks raise ConfigError without the file's name; add it."""
    try:
        return make()
    except ConfigError as e:
        raise ConfigError(f"{where.source}: {e}") from e


def convert(hint: Any, value: Any, where: Where, current: Any = None) -> Any:
    """``value`` as the type ``hint`` names, or ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None: TOML has no null
        (hint,) = [a for a in args if a is not type(None)]
        return convert(hint, value, where, current)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise where.error(value, "true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise where.error(value, "a whole number")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise where.error(value, "a finite number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise where.error(value, "a string in quotes")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = [m.value for m in hint]
        if value in choices and type(value) is type(choices[0]):
            return hint(value)
        raise where.error(value, "one of " + ", ".join(json.dumps(c) for c in choices))
    if origin is tuple:
        return _tuple(args[0], value, where)
    if origin is dict:
        return _dict(args[1], value, where, current)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, where.inner(where.key))
    raise TypeError(f"config_schema cannot read the type {hint!r} of {where}")


def _tuple(item: Any, value: Any, where: Where) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise where.error(value, "an array [ … ]")
    if isinstance(item, type) and dataclasses.is_dataclass(item):  # [[policy.clients]]
        return tuple(
            build(item, v, Where(where.source, _table_of_array(where.table, where.key, n, v)))
            for n, v in enumerate(value, start=1)
        )
    return tuple(convert(item, v, where) for v in value)


def _table_of_array(table: str, key: str, number: int, value: Any) -> str:
    """``[[policy.clients]] #2 ("his")``: the table's place, and its name when it has one."""
    name = value.get("name") if isinstance(value, Mapping) else None
    return f"[[{table}.{key}]] #{number}" + (f" ({show(name)})" if isinstance(name, str) else "")


def _dict(item: Any, value: Any, where: Where, current: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(value, "a table")
    inner = where.inner(where.key)
    converted = {k: convert(item, v, inner.at(k)) for k, v in value.items()}
    return {**(current or {}), **converted}


def check(instance: Any, where: Where) -> None:
    """Every field's rules over a built dataclass (a config file's, or one with command-line
    overrides), nested dataclasses included."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if value is None:
            continue
        here = where.at(f.name)
        # Command-line overrides arrive without conversion: check their types the same way.
        convert(hints[f.name], _as_toml(value), here)
        for rule in f.metadata.get(_RULES, ()):
            bad = rule.failing(value)
            if bad is None:
                continue
            key, shown = bad
            if rule.keys:
                raise ConfigError(
                    f"{where.inner(f.name)} {key}: unknown key; expected {rule.expected}"
                )
            raise (where.inner(f.name).at(key) if key else here).error(shown, rule.expected)
        for n, element in enumerate(value if isinstance(value, tuple) else (), start=1):
            if dataclasses.is_dataclass(element):
                table = _table_of_array(
                    where.table, f.name, n, {"name": getattr(element, "name", None)}
                )
                check(element, Where(where.source, table))


def _as_toml(value: Any) -> Any:
    """A built value back in TOML's shapes, so :func:`convert` can judge an override."""
    if isinstance(value, tuple):
        return [_as_toml(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {k: _as_toml(v) for k, v in shown.items() if v is not None}
    return value
