"""A ModelDeployment's ``spec.router`` as settings of the router process.

Weights, mirror and sticky keys travel in the routes document, which the router
reloads; authentication and rate limits are settings the router process starts
with. The operator passes each as a ``KANARIA_<NAME>`` environment variable and
``kanaria up`` as a ``--<name>`` flag; both take them from here, so the two
cannot drift.
"""

from __future__ import annotations

from kanaria.api import RouterSpec


def router_process_settings(router: RouterSpec, tokens_file: str | None) -> dict[str, str]:
    """Setting name (as in the router's settings) -> value, for ``router``.

    ``tokens_file`` is where the router finds the accepted tokens (the mounted
    Secret in a cluster, ``auth.tokensFile`` locally); None leaves auth off.
    """
    settings: dict[str, str] = {}
    if router.auth is not None and tokens_file is not None:
        settings["bearer_tokens_file"] = tokens_file
        settings["auth_header"] = router.auth.header
    limit = router.rateLimit
    if limit is not None:
        settings["rate_limit_rps"] = f"{limit.requestsPerSecond:g}"
        settings["rate_limit_burst"] = str(limit.burst)
        if limit.trustedProxies:
            settings["trusted_proxies"] = ",".join(limit.trustedProxies)
    return settings


def as_env(settings: dict[str, str]) -> dict[str, str]:
    """``{"rate_limit_rps": "5"}`` -> ``{"KANARIA_RATE_LIMIT_RPS": "5"}``."""
    return {f"KANARIA_{name.upper()}": value for name, value in settings.items()}


def as_flags(settings: dict[str, str]) -> list[str]:
    """``{"rate_limit_rps": "5"}`` -> ``["--rate-limit-rps", "5"]`` (sorted: a stable argv)."""
    return [
        arg
        for name, value in sorted(settings.items())
        for arg in (f"--{name.replace('_', '-')}", value)
    ]
