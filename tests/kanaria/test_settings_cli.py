"""Flags and environment variables generated from the settings models (kanaria.settings_cli).

For each component (model server, router, operator): every settings field has a
flag and a variable that set it to the same value; the flag names that pod
specs, ``kanaria up``, the chart and scripts pass keep working; and a bad value,
from a flag or from the environment, ends the real process with exit code 2 and
one line naming the flag and the variable, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import pytest
from kanaria_operator import cli as operator_cli
from kanaria_operator.settings import OperatorSettings
from kanaria_router import cli as router_cli
from kanaria_router.settings import RouterSettings
from kanaria_server import cli as server_cli
from kanaria_server.settings import Settings as ServerSettings
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from kanaria import settings_cli
from kanaria.settings_cli import Flag, Setting
from tests.support import procs


@dataclass(frozen=True)
class Component:
    command: str
    model: type[BaseModel]
    configure: Callable[[argparse.ArgumentParser], None]
    base: dict[str, str]
    """Flag -> text every start needs (the model server's required model and name)."""


COMPONENTS = {
    "serve-model": Component(
        "serve-model", ServerSettings, server_cli.configure, {"--model": "m.onnx", "--name": "m"}
    ),
    "route": Component("route", RouterSettings, router_cli.configure, {}),
    "operator": Component("operator", OperatorSettings, operator_cli.configure, {}),
}

CANDIDATES = ("3", "0.5", "4096", "a" * 64, "/tmp/kanaria-sample")
"""Texts tried in turn for a plain setting until one is valid and not the default."""
LIST_SAMPLE = "10.0.0.1,10.0.0.2"
"""A list text every list setting accepts (namespaces, tokens, proxy networks)."""


def _parser(component: Component) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"kanaria {component.command}", exit_on_error=False)
    component.configure(parser)
    return parser


def _load(component: Component, *flags: str, without: str = "") -> BaseModel:
    """The settings from ``flags`` and the base flags (but ``without``) and the environment."""
    base = [a for flag, text in component.base.items() if flag != without for a in (flag, text)]
    args = _parser(component).parse_args([*base, *flags])
    if component.command == "operator":
        return operator_cli.load_settings(args)
    return settings_cli.load(component.model, args)


def _clean_environment(monkeypatch: pytest.MonkeyPatch, component: Component) -> None:
    for s in settings_cli.settings_of(component.model):
        monkeypatch.delenv(s.env, raising=False)


def _sample(component: Component, setting: Setting) -> tuple[list[str], str]:
    """(flags, variable text) that set ``setting`` to a valid value other than its default."""
    default = getattr(_load(component), setting.name)
    if setting.kind == "switch":
        return ([f"--no-{setting.flag[2:]}"] if default else [setting.flag]), str(not default)
    if setting.kind == "list":
        half = LIST_SAMPLE.split(",")
        return [setting.flag, half[0], setting.flag, half[1]], LIST_SAMPLE
    texts = [c for c in setting.choices if c != str(default)] or list(CANDIDATES)
    for text in texts:
        try:
            value = getattr(_load(component, setting.flag, text), setting.name)
        except settings_cli.InvalidSettingsError:
            continue
        if value != default:
            return [setting.flag, text], text
    raise AssertionError(f"no sample value for {setting.name}: extend CANDIDATES")


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_every_setting_has_a_flag_and_a_variable_that_agree(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    component = COMPONENTS[name]
    _clean_environment(monkeypatch, component)
    parser = _parser(component)
    by_dest = {a.dest: a for a in parser._actions}
    settings = settings_cli.settings_of(component.model)
    assert {s.name for s in settings} == set(component.model.model_fields)
    for s in settings:
        assert s.name in by_dest, f"{name}: {s.name} has no flag"
        assert s.flag in by_dest[s.name].option_strings
        assert s.env == "KANARIA_" + s.name.upper()
        assert s.description, f"{name}: {s.name} has no description (its unit goes there)"
        flags, text = _sample(component, s)
        from_flag = getattr(_load(component, *flags), s.name)
        with monkeypatch.context() as env:
            env.setenv(s.env, text)
            from_env = getattr(_load(component, without=s.flag), s.name)
            # a flag wins over the variable
            if s.kind != "switch":
                env.setenv(s.env, "this is not it")
            assert getattr(_load(component, *flags), s.name) == from_flag
        assert from_flag == from_env, (name, s.name, flags, text)


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_help_lists_every_flag_and_variable(name: str) -> None:
    component = COMPONENTS[name]
    done = subprocess.run(
        procs.kanaria(component.command, "--help"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    flat = " ".join(done.stdout.split())
    for s in settings_cli.settings_of(component.model):
        assert s.flag in flat, s.name
        assert f"Env: {s.env}." in flat, s.name


def test_flag_names_used_by_callers_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    """The names ``kanaria up``, the tests, the chart and bench pass (grep them before
    removing one): older spellings are aliases of the generated flags."""
    for component in COMPONENTS.values():
        _clean_environment(monkeypatch, component)
    route = COMPONENTS["route"]
    router = _load(route, "--config", "r", "--reload-interval", "0.5", "--log-level", "WARNING")
    assert isinstance(router, RouterSettings)
    assert (router.reload_interval_s, router.log_level) == (0.5, "warning")
    operator = _load(
        COMPONENTS["operator"],
        *("-n", "ml", "--namespace", "ml-staging", "--resync-interval", "1"),
        *("--lease-duration", "3", "--kubeconfig", "/k", "--identity", "me"),
    )
    assert isinstance(operator, OperatorSettings)
    assert operator.namespaces == ["ml", "ml-staging"]
    assert (operator.resync_interval_s, operator.lease_duration_s) == (1, 3)
    monkeypatch.setenv("KANARIA_NAMESPACES", "elsewhere")
    everywhere = _load(COMPONENTS["operator"], "-A")
    assert isinstance(everywhere, OperatorSettings)
    assert everywhere.namespaces == []
    with pytest.raises(argparse.ArgumentError, match="not allowed with"):
        _parser(COMPONENTS["operator"]).parse_args(["-A", "-n", "ml"])
    with pytest.raises(argparse.ArgumentError, match="not allowed with"):
        _parser(route).parse_args(["--config", "a", "--configmap", "ns/b"])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ("serve-model", "--model", "m.onnx", "--name", "m", "--port", "eighty"),
            {},
            "--port (KANARIA_PORT): Input should be a valid integer",
        ),
        (
            ("serve-model", "--model", "m.onnx", "--name", "m"),
            {"KANARIA_MAX_BATCH_SIZE": "0"},
            "KANARIA_MAX_BATCH_SIZE (--max-batch-size): Input should be greater than or equal to 1",
        ),
        (
            ("route", "--config", "r.yaml", "--mirror-priority", "high"),
            {},
            "--mirror-priority (KANARIA_MIRROR_PRIORITY): Input should be 'idle', 'low' or "
            "'normal' (got 'high')",
        ),
        (
            ("route", "--config", "r.yaml"),
            {"KANARIA_MIRROR_TIMEOUT_S": "soon"},
            "KANARIA_MIRROR_TIMEOUT_S (--mirror-timeout-s): Input should be a valid number",
        ),
        (
            ("operator", "--resync-interval", "0"),
            {},
            "--resync-interval (KANARIA_RESYNC_INTERVAL_S): Input should be greater than 0",
        ),
        (
            ("operator",),
            {"KANARIA_CHECK_MODEL_URIS": "perhaps"},
            "KANARIA_CHECK_MODEL_URIS (--check-model-uris): Input should be a valid boolean",
        ),
        (("operator", "--log-level", "loud"), {}, "--log-level (KANARIA_LOG_LEVEL): Input should"),
        (("route", "--no-such-flag"), {}, "unrecognized arguments: --no-such-flag"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_a_bad_value_exits_2_naming_the_flag_and_the_variable(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("KANARIA_")}
    done = subprocess.run(
        procs.kanaria(*args),
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


class _Toy(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOY_")

    rate: float = Field(default=0.5, ge=0, le=1, description="A fraction, 0-100%.")
    token: SecretStr = Field(default=SecretStr("x"), min_length=8, description="A secret.")
    names: Annotated[list[str], Flag("-N", metavar="NAME")] = Field(
        default_factory=list, description="Names."
    )


def test_help_escapes_percent_and_errors_never_echo_secrets() -> None:
    parser = argparse.ArgumentParser(prog="toy")
    settings_cli.add_flags(parser, _Toy)
    assert "0-100%." in parser.format_help()
    args = parser.parse_args(["--token", "hunter2", "-N", "a", "--names", "b"])
    assert settings_cli.given(_Toy, args) == {"token": "hunter2", "names": "a,b"}
    with pytest.raises(settings_cli.InvalidSettingsError) as caught:
        settings_cli.load(_Toy, parser.parse_args(["--token", "hunter2", "--rate", "2"]))
    text = str(caught.value)
    assert "--token (TOY_TOKEN): Value should have at least 8 items" in text
    assert "hunter2" not in text
    assert "--rate (TOY_RATE): Input should be less than or equal to 1 (got '2')" in text
