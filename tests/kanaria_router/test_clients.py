"""The client address behind trusted proxies: pure logic, then a real router."""

from __future__ import annotations

import argparse
import os
import re
import subprocess

import httpx
import pytest
from kanaria_router.cli import configure, load_settings
from kanaria_router.clients import Network, client_address, parse_networks

from kanaria.router_process import as_flags
from tests.kanaria_router.conftest import Backend, RouterFactory, infer_body, routes
from tests.support import procs

LB = parse_networks("10.0.0.0/8, fd00::/8 192.168.1.1")


def test_networks_parse_from_commas_and_spaces_and_bad_ones_are_named() -> None:
    assert [str(n) for n in LB] == ["10.0.0.0/8", "fd00::/8", "192.168.1.1/32"]
    assert parse_networks("") == []
    with pytest.raises(ValueError, match=re.escape("'10.0.0.300' is not an IP address or network")):
        parse_networks("10.0.0.0/8,10.0.0.300")


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        # no trusted proxies: the header is ignored, whatever it says
        ("203.0.113.9", ["198.51.100.1"], [], "203.0.113.9"),
        # a peer that is not a trusted proxy cannot choose its address
        ("203.0.113.9", ["198.51.100.1"], LB, "203.0.113.9"),
        # through the load balancer: the address it saw
        ("10.1.2.3", ["198.51.100.1"], LB, "198.51.100.1"),
        # two trusted hops (ingress behind the load balancer), repeated headers
        ("10.1.2.3", ["198.51.100.1", "10.9.9.9"], LB, "198.51.100.1"),
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9"], LB, "198.51.100.1"),
        # a spoofed entry at the left is never reached past an untrusted one
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], LB, "198.51.100.1"),
        # garbage is an untrusted hop: it keys its own bucket, it opens nothing
        ("10.1.2.3", ["198.51.100.1, not-an-ip"], LB, "not-an-ip"),
        # every hop trusted (an internal caller): the farthest one
        ("10.1.2.3", ["10.4.4.4, 10.5.5.5"], LB, "10.4.4.4"),
        # a trusted peer that sent no header: the peer itself
        ("10.1.2.3", [], LB, "10.1.2.3"),
        ("fd00::1", ["2001:db8::7"], LB, "2001:db8::7"),
    ],
)
def test_client_is_the_rightmost_untrusted_hop(
    peer: str, forwarded: list[str], trusted: list[Network], client: str
) -> None:
    assert client_address(peer, forwarded, trusted) == client


def test_router_limits_each_forwarded_client_on_its_own(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    r = router(
        routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 100)}}}),
        KANARIA_RATE_LIMIT_RPS="0.01",
        KANARIA_RATE_LIMIT_BURST="2",
        KANARIA_TRUSTED_PROXIES="127.0.0.0/8",
    )

    def codes(forwarded: str, n: int) -> list[int]:
        headers = {"X-Forwarded-For": forwarded}
        with httpx.Client(base_url=r.url, timeout=10) as c:
            return [
                c.post("/v2/models/fraud/infer", json=infer_body(), headers=headers).status_code
                for _ in range(n)
            ]

    assert codes("198.51.100.1", 3) == [200, 200, 429]
    assert codes("198.51.100.2", 2) == [200, 200]  # another client behind the same proxy
    # prepending a fresh address does not buy a fresh bucket
    assert codes("6.6.6.6, 198.51.100.2", 1) == [429]


def test_router_refuses_a_bad_trusted_proxies_setting() -> None:
    result = subprocess.run(
        procs.kanaria("route", "--config", "/nonexistent.yaml"),
        env={**os.environ, "KANARIA_TRUSTED_PROXIES": "10.0.0.0/8, ten"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "KANARIA_TRUSTED_PROXIES (--trusted-proxies)" in result.stderr
    assert "'ten' is not an IP address or network" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_router_cli_takes_every_setting_kanaria_up_passes() -> None:
    """``kanaria up`` starts its router with the flags :func:`as_flags` writes."""
    parser = argparse.ArgumentParser()
    configure(parser)
    flags = as_flags(
        {
            "bearer_tokens_file": "/t",
            "auth_header": "X-Key",
            "rate_limit_rps": "2.5",
            "rate_limit_burst": "4",
            "trusted_proxies": "10.0.0.0/8,fd00::1",
        }
    )
    settings = load_settings(parser.parse_args(flags))
    assert str(settings.bearer_tokens_file) == "/t"
    assert settings.auth_header == "X-Key"
    assert settings.rate_limit_rps == 2.5
    assert settings.rate_limit_burst == 4
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::1/128"]
