"""Where a channel points, judged when it is saved: a host that is an internal address in
any spelling can never be delivered to, so the API refuses it with a 400 naming the field.

Resolvers read more than dotted quads: `127.1`, `2130706433`, `0177.0.0.1` and `0x7f.1`
all reach 127.0.0.1 (inet_aton, and the WHATWG URL parser, take 1 to 4 parts, each
decimal, octal with a leading 0, or hex with 0x). `literal_address` reads a host the same
way, so every spelling meets the egress rules of `ssrf.py` (and their allow-list).
`localhost` names are loopback by definition (RFC 6761). Other names are not resolved
here: DNS may change after saving, and the check at connect time covers what they
resolve to then.
"""

from __future__ import annotations

import ipaddress
import re

from services.alerting.notify.ssrf import Address, EgressPolicy

_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
ALLOW_VARIABLE = "ALERTING_EGRESS_ALLOW_CIDRS"
_LOCALHOST = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _part(text: str) -> int:
    if text[:2].lower() == "0x":
        return int(text[2:] or "0", 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)  # ValueError on 8 or 9, as inet_aton refuses them
    return int(text, 10)


def _ipv4(host: str) -> ipaddress.IPv4Address:
    parts = host.split(".")
    if len(parts) > 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        raise ValueError(host)
    numbers = [_part(p) for p in parts]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(host)
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> tuple[Address, ...] | None:
    """The address(es) `host` names without DNS, None for a name to resolve; ValueError
    for a host that ends in a number but is no IPv4 address in any spelling (`1.2.3.4.5`,
    `999.1`): resolvers may read it in ways of their own, so it is not accepted."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return (ipaddress.ip_address(bare),)
    except ValueError:
        pass
    name = bare[:-1] if bare.endswith(".") else bare
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return _LOCALHOST
    if not _NUMBER.fullmatch(name.rpartition(".")[2]):
        return None
    return (_ipv4(name),)


def destination_problem(host: str, policy: EgressPolicy) -> str | None:
    """Why a channel may not point at `host`, or None if it may (or DNS decides later)."""
    try:
        addresses = literal_address(host)
    except ValueError:
        return "not a valid host name or IP address"
    for address in addresses or ():
        why = policy.verdict(address)
        if why is not None:
            shown = host if host.strip("[]") == str(address) else f"{host} ({address})"
            # The variable named: the operator's fix (e.g. a local receiver in development).
            return (
                f"{shown} is refused by the egress policy ({why}) "
                f"unless the operator's {ALLOW_VARIABLE} admits it"
            )
    return None
