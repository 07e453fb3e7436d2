"""The routes document is the control plane / data plane contract: it must
reject what the router could not serve, with a message that names the problem."""

from __future__ import annotations

import pytest

from kanaria.routes import RoutesConfig

GOOD = """
models:
  fraud:
    versions:
      v1: {url: "http://127.0.0.1:9001", weight: 90}
      v2: {url: "http://127.0.0.1:9002", weight: 10}
      v3: {url: "http://127.0.0.1:9003", ready: false}
    mirror: {version: v3, percent: 50}
    stickyKey: {header: x-user-id}
"""


def test_round_trip_keeps_every_field() -> None:
    config = RoutesConfig.from_yaml(GOOD)
    again = RoutesConfig.from_yaml(config.to_yaml())
    assert again == config
    fraud = again.models["fraud"]
    assert fraud.versions["v2"].weight == 10
    assert fraud.mirror is not None
    assert fraud.mirror.percent == 50
    assert fraud.stickyKey is not None
    assert fraud.stickyKey.header == "x-user-id"


def test_empty_document_means_no_models() -> None:
    assert RoutesConfig.from_yaml("").models == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "not valid YAML"),
        ("- a\n- b", "must be a mapping"),
        ("models: {m: {versions: {v1: {url: 'http://a', weight: 50}}}}", "sum to 100"),
        (
            "models: {m: {versions: {v1: {url: 'http://a', weight: 101}}}}",
            "less than or equal to 100",
        ),
        ("models: {m: {versions: {}}}", "at least one version"),
        ("models: {m: {versions: {v1: {url: 'not a url', weight: 100}}}}", "URL"),
        ("models: {m: {versions: {v1: {url: 'http://a', weight: 100, ready: false}}}}", "unready"),
        (
            "models: {m: {versions: {v1: {url: 'http://a', weight: 100}}, mirror: {version: v9}}}",
            "v9",
        ),
        (
            "models: {m: {versions: {v1: {url: 'http://a', weight: 100}}, stickyKey: {}}}",
            "header or a cookie",
        ),
        (
            "models: {m: {versions: {v1: {url: 'http://a', weight: 100}}, weights: 3}}",
            "Extra inputs",
        ),
    ],
)
def test_invalid_documents_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoutesConfig.from_yaml(text)
