"""Egress guard: outgoing notification requests never reach internal addresses.

The check runs in the connector's socket factory, on the very address a socket is about
to connect to, after DNS: a hostname that resolves to a public address when a channel is
saved and to 169.254.169.254 at delivery time (DNS rebinding) is refused all the same,
and so are IP literals (which aiohttp never sends through the resolver). Refused are
private, loopback, link-local (cloud metadata lives there), unspecified, multicast,
reserved and shared (CGNAT) addresses, IPv4-mapped IPv6 forms of them, and the metadata
endpoints, unless an allow-list of CIDRs admits the address (tests admit 127.0.0.0/8).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Sequence

import aiohttp
from aiohttp.abc import AbstractResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints outside the ranges below (AWS IPv6, Alibaba, Oracle legacy).
METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
    ipaddress.ip_network("192.0.0.192/32"),
)
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: internal in practice
MARKER = "refused by the egress policy"


class EgressRefused(PermissionError):
    """A connection to a forbidden address was refused before any packet was sent."""

    def __init__(self, address: str, why: str) -> None:
        super().__init__(errno.EACCES, f"connection to {address} {MARKER} ({why})")
        self.address = address


def forbidden(address: Address) -> str | None:
    """Why connecting to `address` is forbidden by default, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden(address.ipv4_mapped)
    if any(address in net for net in METADATA):
        return "metadata endpoint"
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("shared address space", isinstance(address, ipaddress.IPv4Address) and address in SHARED),
        ("not globally routable", not address.is_global),
    )
    return next((why for why, hit in checks if hit), None)


class EgressPolicy:
    def __init__(self, allow: Sequence[Network] = ()) -> None:
        self.allow = tuple(allow)

    def check(self, host: str) -> None:
        """Raise EgressRefused unless connecting to the IP `host` is allowed."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
        except ValueError:
            raise EgressRefused(host, "not an IP address") from None
        if any(address in net for net in self.allow if net.version == address.version):
            return
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None and any(mapped in net for net in self.allow if net.version == 4):
            return
        why = forbidden(address)
        if why is not None:
            raise EgressRefused(host, why)

    def socket_factory(self, addr_info: tuple[object, ...]) -> socket.socket:
        family, type_, proto, _canon, sockaddr = addr_info
        assert isinstance(sockaddr, tuple)
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)  # type: ignore[arg-type]


def guarded_connector(
    policy: EgressPolicy, resolver: AbstractResolver | None = None, **kwargs: object
) -> aiohttp.TCPConnector:
    """A connector whose every socket is checked against `policy` before it connects."""
    return aiohttp.TCPConnector(
        resolver=resolver,
        socket_factory=policy.socket_factory,
        **kwargs,  # type: ignore[arg-type]
    )


def refusal(exc: BaseException) -> str | None:
    """The egress refusal behind a client error (aiohttp wraps it), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EgressRefused):
            return str(current.strerror)
        # Several addresses refused: aiohappyeyeballs joins them into one OSError.
        if isinstance(current, OSError) and MARKER in str(current):
            return str(current)
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, BaseException):
            current = os_error
            continue
        current = current.__cause__ or current.__context__
    return None
