"""Command-line flags generated from a pydantic-settings model.

Every process setting of Kanaria's three components (model server, router,
operator) is written once, as a field of the component's settings model with
its unit in the description; this module turns that model into argparse flags
(``max_batch_size`` is ``--max-batch-size``), their help texts, the matching
environment variable (``KANARIA_MAX_BATCH_SIZE``), clear error lines for bad
values, and the rows of the reference page (``docs/reference/settings.md``).
Hand-written flags drift: the router once exposed 11 of its 25 settings.

Flags win over the environment: given flags are passed to the model as init
values, which pydantic-settings ranks above environment variables. A flag's
text is validated exactly like its environment variable's, by the model: the
parser only collects strings, so ``--port 99999`` and ``KANARIA_PORT=99999``
give the same message. A list setting takes the same text as its environment
variable (each model splits it), and a repeated flag joins its values with
commas. A ``bool`` setting is a switch pair (``--check-model-uris`` /
``--no-check-model-uris``).

A field may carry :class:`Flag` in its ``Annotated`` metadata for more option
strings (names kept from earlier releases, short forms such as ``-n``) or a
metavar.

Only pydantic is imported here (the core's dependency); the models are
pydantic-settings ``BaseSettings`` classes, read through ``BaseModel``'s API.
"""

from __future__ import annotations

import argparse
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, SecretStr, ValidationError
from pydantic.fields import FieldInfo

M = TypeVar("M", bound=BaseModel)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
]
"""The ``log_level`` setting of every component; ``WARNING`` and ``warning`` both work
(the router's flag took upper case, the others lower case)."""

USED_FLAGS = "_kanaria_used_flags"
"""Namespace attribute: setting name -> the option string the user typed (for errors)."""


class Flag:
    """``Annotated`` metadata of a setting: extra option strings and/or a metavar.

    ``Annotated[float, Flag("--reload-interval")]`` keeps an older flag name working
    next to the generated ``--reload-interval-s``.
    """

    __slots__ = ("aliases", "metavar")

    def __init__(self, *aliases: str, metavar: str | None = None) -> None:
        for alias in aliases:
            if not alias.startswith("-"):
                raise ValueError(f"flag alias {alias!r} must start with '-'")
        self.aliases: tuple[str, ...] = aliases
        self.metavar = metavar

    def __repr__(self) -> str:
        return f"Flag({', '.join(map(repr, self.aliases))}, metavar={self.metavar!r})"


Kind = Literal["value", "switch", "list"]


@dataclass(frozen=True)
class Setting:
    """One field of a settings model as the command line and the docs show it."""

    name: str
    """Field name (``max_batch_size``)."""
    flags: tuple[str, ...]
    """Option strings, the generated ``--max-batch-size`` first, then the aliases."""
    env: str
    """Environment variable (``KANARIA_MAX_BATCH_SIZE``)."""
    description: str
    """The field's description on one line (units included)."""
    default: str
    """The default as text: the value, ``required``, ``unset`` or what computes it."""
    default_is_value: bool
    """Whether :attr:`default` is a literal value (docs set it in code font)."""
    kind: Kind
    choices: tuple[str, ...]
    """Allowed values of a ``Literal`` field (else empty)."""
    metavar: str | None
    secret: bool
    """A secret's value is never echoed in an error."""

    @property
    def flag(self) -> str:
        """The generated option string (``--`` + the name with dashes)."""
        return self.flags[0]


class InvalidSettingsError(ValueError):
    """Settings that do not validate; ``str()`` is the message for the terminal."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("invalid settings:\n  " + "\n  ".join(self.lines))


# --- describing a model ----------------------------------------------------------


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _kind(annotation: Any) -> Kind:
    if annotation is bool:
        return "switch"
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        return "list"
    return "value"


def _choices(annotation: Any) -> tuple[str, ...]:
    if typing.get_origin(annotation) is Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(str(e.value) for e in annotation)
    return ()


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(a) for a in typing.get_args(annotation))


def _text(value: Any) -> str:
    """A default value as a person writes it on the command line or in a variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, (Path, str, int)):
        return str(value)
    return repr(value)


def _default(info: FieldInfo) -> tuple[str, bool]:
    """(text, is a literal value) of a field's default."""
    if info.is_required():
        return "required", False
    factory = info.default_factory
    if factory in (list, dict, set, tuple, frozenset):
        return "empty", False
    if factory is not None:
        doc = (factory.__doc__ or "").strip().splitlines()
        return (doc[0].rstrip(".") if doc else "computed at start"), False
    value = info.default
    if value is None:
        return "unset", False
    if isinstance(value, (list, tuple, set, frozenset)) and not value:
        return "empty", False
    return _text(value), True


def _one_line(text: str | None) -> str:
    """Collapse a (doc)string to one line; reST ````code```` becomes Markdown `code`."""
    return re.sub(r"\s+", " ", (text or "").replace("``", "`")).strip()


def _metavar(name: str, annotation: Any, kind: Kind, choices: tuple[str, ...]) -> str | None:
    if kind == "switch":
        return None
    if choices:
        return "{" + ",".join(choices) + "}"
    if annotation in (int, float):
        for suffix, unit in (("_s", "SECONDS"), ("_ms", "MS"), ("_bytes", "BYTES")):
            if name.endswith(suffix):
                return unit
        return "N"
    if annotation is Path:
        return "PATH"
    return name.upper()


def env_prefix(model: type[BaseModel]) -> str:
    """The model's environment-variable prefix (``KANARIA_``)."""
    return str(model.model_config.get("env_prefix", ""))


def settings_of(model: type[BaseModel]) -> list[Setting]:
    """Every field of ``model`` as a :class:`Setting`, in declaration order."""
    prefix = env_prefix(model)
    out: list[Setting] = []
    for name, info in model.model_fields.items():
        marks = [m for m in info.metadata if isinstance(m, Flag)]
        annotation, _optional = _strip_optional(info.annotation)
        kind = _kind(annotation)
        choices = _choices(annotation)
        default, is_value = _default(info)
        metavar = next((m.metavar for m in marks if m.metavar), None) or _metavar(
            name, annotation, kind, choices
        )
        out.append(
            Setting(
                name=name,
                flags=("--" + name.replace("_", "-"), *(a for m in marks for a in m.aliases)),
                env=prefix + name.upper(),
                description=_one_line(info.description),
                default=default,
                default_is_value=is_value,
                kind=kind,
                choices=choices,
                metavar=metavar,
                secret=_is_secret(annotation),
            )
        )
    return out


def help_text(setting: Setting) -> str:
    """The ``--help`` line of a setting: description, default, variable, list rule."""
    parts = [setting.description]
    if setting.kind == "list":
        parts.append("Repeatable; values are joined with commas.")
    if setting.default == "required":
        parts.append("Required.")
    else:
        parts.append(f"Default: {setting.default}.")
    parts.append(f"Env: {setting.env}.")
    return " ".join(p for p in parts if p)


# --- the parser ------------------------------------------------------------------


def _record(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    used: dict[str, str] | None = getattr(namespace, USED_FLAGS, None)
    if used is None:
        used = {}
        setattr(namespace, USED_FLAGS, used)
    if option_string is not None:
        used[dest] = option_string


class _Store(argparse.Action):
    """Store (or, for lists, append) the flag's text and remember the option string."""

    def __init__(self, *args: Any, append: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.append = append

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if self.append:
            items = list(getattr(namespace, self.dest, None) or [])
            items.append(values)
            setattr(namespace, self.dest, items)
        else:
            setattr(namespace, self.dest, values)
        _record(namespace, self.dest, option_string)


class _Switch(argparse.BooleanOptionalAction):
    """``--x`` / ``--no-x``, remembering which one was typed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest, option_string)


def add_flags(
    parser: argparse._ActionsContainer,
    model: type[BaseModel],
    containers: Mapping[str, argparse._ActionsContainer] | None = None,
) -> None:
    """Add one flag per field of ``model`` to ``parser``.

    ``containers`` puts a field's flag in another group of the same parser (a
    mutually exclusive one, say). Defaults stay None so that an absent flag lets
    the environment, then the model's default, decide.
    """
    placed = containers or {}
    for s in settings_of(model):
        target = placed.get(s.name, parser)
        text = help_text(s).replace("%", "%%")  # argparse %-formats help
        if s.kind == "switch":
            target.add_argument(*s.flags, dest=s.name, action=_Switch, default=None, help=text)
        else:
            target.add_argument(
                *s.flags,
                dest=s.name,
                action=_Store,
                append=s.kind == "list",
                default=None,
                metavar=s.metavar,
                help=text,
            )


def given(model: type[BaseModel], args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags: field name -> text (lists joined with commas)."""
    values: dict[str, Any] = {}
    for s in settings_of(model):
        value = getattr(args, s.name, None)
        if value is None:
            continue
        values[s.name] = ",".join(value) if s.kind == "list" else value
    return values


def _from_environment(env: str) -> bool:
    """Whether ``env`` is set (pydantic-settings matches names case-insensitively)."""
    return any(key.upper() == env.upper() for key in os.environ)


def _error_line(setting: Setting | None, where: str, used: str | None, err: Any) -> str:
    message = str(err.get("msg", "invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if setting is None:
        return f"{where or 'settings'}: {message}"
    if used is None and _from_environment(setting.env):
        source = f"{setting.env} ({setting.flag})"  # the value came from the variable
    else:
        source = f"{used or setting.flag} ({setting.env})"
    value = err.get("input")
    shown = ""
    if (
        err.get("type") != "missing"
        and not setting.secret
        and isinstance(value, (str, int, float))
        and len(str(value)) <= 80
    ):
        shown = f" (got {str(value)!r})"
    return f"{source}{where}: {message}{shown}"


def describe_errors(
    model: type[BaseModel], exc: ValidationError, used: Mapping[str, str] | None = None
) -> list[str]:
    """One line per problem, naming the flag (the one typed, if any) and the variable."""
    by_name = {s.name: s for s in settings_of(model)}
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        setting = by_name.get(loc[0]) if loc else None
        rest = "".join(f"[{p}]" for p in loc[1:]) if setting else ".".join(loc)
        lines.append(_error_line(setting, rest, (used or {}).get(loc[0]) if loc else None, err))
    return lines


def load(model: type[M], args: argparse.Namespace, **overrides: Any) -> M:
    """The settings: ``overrides``, then flags, then the environment, then defaults.

    Raises :class:`InvalidSettingsError` with one line per problem, never a traceback's
    worth of pydantic output.
    """
    values = {**given(model, args), **overrides}
    try:
        return model(**values)
    except ValidationError as exc:
        used: Mapping[str, str] = getattr(args, USED_FLAGS, None) or {}
        raise InvalidSettingsError(describe_errors(model, exc, used)) from None
    except ValueError as exc:  # pydantic-settings' SettingsError: a variable it cannot parse
        raise InvalidSettingsError([str(exc)]) from None
