"""Egress guard: outgoing notification requests never reach internal addresses.

The check runs in the connector's socket factory, on the very address a socket is about
to connect to, after DNS: a hostname that resolves to a public address when a channel is
saved and to 169.254.169.254 at delivery time (DNS rebinding) is refused all the same,
and so are IP literals (which aiohttp never sends through the resolver). Refused are
private, loopback, link-local (cloud metadata lives there), unspecified, multicast,
reserved and shared (CGNAT) addresses, and the metadata endpoints; IPv6 forms that embed
an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) are refused when the
embedded address is. An allow-list of CIDRs admits addresses (tests admit 127.0.0.0/8).

SMTP has no connector to hook: `open_checked` resolves the relay's name, checks every
address, and connects a socket to a checked one, which aiosmtplib then talks over.
"""

from __future__ import annotations

import asyncio
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
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: IPv4 in the last 32 bits
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translators
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
MARKER = "refused by the egress policy"


class EgressRefused(PermissionError):
    """A connection to a forbidden address was refused before any packet was sent.

    The message (what the delivery log shows the tenant) names the kind of address, not
    the address: a channel naming an internal host must not learn what it resolves to."""

    def __init__(self, address: str, why: str) -> None:
        super().__init__(errno.EACCES, f"connection {MARKER} ({why})")
        self.address = address
        self.why = why


def embedded_ipv4(
    address: ipaddress.IPv6Address,
) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """The IPv4 address(es) an IPv6 address carries, with the form's name, or None.

    A packet to such an address may reach the IPv4 host through a translator or tunnel
    (or, for the mapped form, the local stack), so the IPv4 host is judged as well."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return "6to4", (address.sixtofour,)
    if address.teredo is not None:
        return "Teredo", address.teredo  # (server, client)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64:
        return "NAT64", (low32,)
    if address in NAT64_LOCAL:
        # RFC 6052 /48 layout: IPv4 in bytes 6-7 and 9-10 (byte 8 is the zero "u" octet).
        packed = address.packed
        return "NAT64 local-use", (ipaddress.IPv4Address(packed[6:8] + packed[9:11]),)
    if address in IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return "IPv4-compatible", (low32,)
    return None


def forbidden(address: Address) -> str | None:
    """Why connecting to `address` is forbidden by default, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            for v4 in inner:
                why = forbidden(v4)
                if why is not None:
                    return f"{why}, in {form} form"
            if form in ("IPv4-mapped", "NAT64"):  # reach just that IPv4 host
                return None
            # Otherwise the IPv6 address is judged too: 6to4 passes, while Teredo,
            # IPv4-compatible and local-use NAT64 addresses are not global and stay refused.
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

    def admits(self, address: Address) -> bool:
        """The allow-list admits `address` (or the IPv4 address it is a mapped form of)."""
        if any(address in net for net in self.allow if net.version == address.version):
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return mapped is not None and any(mapped in net for net in self.allow if net.version == 4)

    def verdict(self, address: Address) -> str | None:
        """Why connecting to `address` is refused under this policy, or None."""
        return None if self.admits(address) else forbidden(address)

    def check(self, host: str) -> None:
        """Raise EgressRefused unless connecting to the IP `host` is allowed."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
        except ValueError:
            raise EgressRefused(host, "not an IP address") from None
        why = self.verdict(address)
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


async def open_checked(
    policy: EgressPolicy, resolver: AbstractResolver, host: str, port: int
) -> socket.socket:
    """A socket connected to `host`:`port` (for SMTP), after every address the name
    resolves to passed `policy`: one refused address refuses the host (EgressRefused),
    so an answer mixing public and internal addresses can't be played. The caller
    bounds the time (resolution and connect); the socket is the caller's to close."""
    results = await resolver.resolve(host, port, family=socket.AF_UNSPEC)
    if not results:
        raise OSError(errno.EHOSTUNREACH, "no address")
    for result in results:
        policy.check(result["host"])
    loop = asyncio.get_running_loop()
    error: OSError | None = None
    for result in results:  # the first address that takes the connection
        sock = socket.socket(result["family"], socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (result["host"], result["port"] or port))
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    assert error is not None
    raise error


def refusal(exc: BaseException) -> str | None:
    """The egress refusal behind a client error (aiohttp wraps it), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EgressRefused):
            return str(current.strerror)
        os_error = getattr(current, "os_error", None)  # aiohttp's wrapper: look inside
        if isinstance(os_error, BaseException):
            current = os_error
            continue
        # Several addresses refused: aiohappyeyeballs joins them into one OSError.
        if isinstance(current, OSError) and MARKER in str(current):
            return str(current)
        current = current.__cause__ or current.__context__
    return None
