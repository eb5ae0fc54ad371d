"""Which IP a hit came from: forwarding headers count only from trusted proxies.

Without that rule anyone could claim any address by sending X-Forwarded-For.
X-Forwarded-For is read right to left, skipping trusted proxies; the first address that
is not one of ours is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)
def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _text(value: str) -> str | None:
    """`value` as the address's canonical text, None if it is not one (cached: a hit
    from a direct peer needs nothing else)."""
    addr = _parse(value)
    return None if addr is None else str(addr)


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Sequence[Network]) -> bool:
    return any(addr in net for net in nets)


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    real_ip: str | None,
    trusted: Sequence[Network],
) -> str | None:
    if not peer:
        return None
    if not trusted:
        return _text(peer)
    peer_addr = _parse(peer)
    if peer_addr is None:
        return None
    if not _trusted(peer_addr, trusted):
        return str(peer_addr)
    if forwarded_for:
        for hop in reversed(forwarded_for.split(",")):
            addr = _parse(hop)
            if addr is None:
                break  # garbage: stop trusting the chain, keep the last good hop
            if not _trusted(addr, trusted):
                return str(addr)
            peer_addr = addr
        return str(peer_addr)
    if real_ip:
        addr = _parse(real_ip)
        if addr is not None:
            return str(addr)
    return str(peer_addr)
