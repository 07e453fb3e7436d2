"""Who is the client? The address rate limiting keys on, behind trusted proxies.

Behind an ingress or load balancer every request arrives from the proxy's
address, so per-address limits would throttle all clients as one. Proxies
append the address they saw to ``X-Forwarded-For``; that header is only as
trustworthy as whoever wrote each entry, so the router walks it from the right
(the entry its own peer wrote) past addresses in the configured trusted
networks, and takes the first one that is not trusted. A client cannot spoof
its way past: whatever it writes at the left is never reached while an
untrusted address stands to its right. With no trusted networks the header is
ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    """Comma- or whitespace-separated addresses or CIDRs; ``ValueError`` names a bad one."""
    networks: list[Network] = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8, fd00::/8)"
            ) from None
    return networks


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy, then from the
    right of ``forwarded_for`` (every ``X-Forwarded-For`` header, in order)."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer  # every hop trusted: the farthest one we know
