"""spec.router -> router process settings: one mapping for the operator (env) and
``kanaria up`` (flags), and the API's validation of what feeds it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kanaria.api import ModelDeployment, RouterSpec
from kanaria.router_process import as_env, as_flags, router_process_settings


def test_settings_follow_auth_and_rate_limit() -> None:
    router = RouterSpec.model_validate(
        {
            "auth": {"header": "X-Api-Key", "tokensFile": "tokens.txt"},
            "rateLimit": {"requestsPerSecond": 0.5, "burst": 3, "trustedProxies": ["10.0.0.0/8"]},
        }
    )
    settings = router_process_settings(router, "/etc/tokens")
    assert settings == {
        "bearer_tokens_file": "/etc/tokens",
        "auth_header": "X-Api-Key",
        "rate_limit_rps": "0.5",
        "rate_limit_burst": "3",
        "trusted_proxies": "10.0.0.0/8",
    }
    assert as_env(settings)["KANARIA_RATE_LIMIT_RPS"] == "0.5"
    flags = as_flags(settings)
    assert flags[flags.index("--trusted-proxies") + 1] == "10.0.0.0/8"
    assert flags == as_flags(dict(reversed(settings.items())))  # stable: argv is compared
    # auth without a tokens file to point at (a cluster spec with no Secret) sets nothing
    assert "bearer_tokens_file" not in router_process_settings(router, None)
    assert router_process_settings(RouterSpec(), None) == {}


@pytest.mark.parametrize(
    ("limit", "field", "message"),
    [
        ({"requestsPerSecond": 0}, "requestsPerSecond", "greater than 0"),
        ({"requestsPerSecond": 1, "burst": 0}, "burst", "greater than or equal to 1"),
        (
            {"requestsPerSecond": 1, "trustedProxies": ["10.0.0.0/8", "ingress"]},
            "trustedProxies",
            "'ingress' is not an IP address or CIDR",
        ),
    ],
)
def test_bad_rate_limits_name_the_field(limit: dict[str, object], field: str, message: str) -> None:
    doc = {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"version": "v1", "uri": "m.onnx"},
            "router": {"rateLimit": limit},
        },
    }
    with pytest.raises(ValidationError) as info:
        ModelDeployment.model_validate(doc)
    assert f"rateLimit.{field}" in str(info.value).replace("\n", " ")
    assert message in str(info.value)
