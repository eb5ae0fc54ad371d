"""Which client IP a hit is attributed to: forwarding headers count only from trusted
proxies, and X-Forwarded-For is read right to left past our own hops."""

from __future__ import annotations

import ipaddress

from services.ingest.clientip import Network, client_ip

PROXIES: list[Network] = [
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("fd00::/8"),
]


def test_no_peer_gives_none() -> None:
    assert client_ip(None, "1.2.3.4", "5.6.7.8", PROXIES) is None
    assert client_ip("", None, None, PROXIES) is None


def test_unparseable_peer_gives_none() -> None:
    assert client_ip("not-an-ip", None, None, PROXIES) is None


def test_peer_is_normalised() -> None:
    assert client_ip("2001:DB8:0::1", None, None, []) == "2001:db8::1"


def test_headers_ignored_when_no_proxies_are_trusted() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", "5.6.7.8", []) == "203.0.113.9"


def test_headers_ignored_from_untrusted_peer() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", "5.6.7.8", PROXIES) == "203.0.113.9"


def test_forwarded_for_honoured_from_trusted_proxy() -> None:
    assert client_ip("10.0.0.5", "198.51.100.7", None, PROXIES) == "198.51.100.7"


def test_forwarded_for_read_right_to_left_skipping_trusted_hops() -> None:
    # client spoofs 6.6.6.6; real client 198.51.100.7; then two of our proxies.
    xff = "6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2"
    assert client_ip("10.0.0.5", xff, None, PROXIES) == "198.51.100.7"


def test_forwarded_for_ipv6_hops() -> None:
    xff = "2001:db8::42, fd00::1"
    assert client_ip("fd00::2", xff, None, PROXIES) == "2001:db8::42"


def test_forwarded_for_of_only_trusted_hops_gives_leftmost_hop() -> None:
    assert client_ip("10.0.0.5", "10.9.9.9, 10.8.8.8", None, PROXIES) == "10.9.9.9"


def test_garbage_rightmost_entry_stops_at_the_peer() -> None:
    assert client_ip("10.0.0.5", "198.51.100.7, garbage", None, PROXIES) == "10.0.0.5"


def test_garbage_behind_trusted_hop_keeps_the_last_good_hop() -> None:
    # Chain is not trusted past the garbage: the address before it is a proxy of ours.
    assert client_ip("10.0.0.5", "unknown, 10.3.3.3", None, PROXIES) == "10.3.3.3"


def test_garbage_left_of_client_does_not_matter() -> None:
    assert client_ip("10.0.0.5", "garbage, 198.51.100.7", None, PROXIES) == "198.51.100.7"


def test_real_ip_honoured_from_trusted_proxy_without_forwarded_for() -> None:
    assert client_ip("10.0.0.5", None, "198.51.100.8", PROXIES) == "198.51.100.8"


def test_forwarded_for_wins_over_real_ip() -> None:
    assert client_ip("10.0.0.5", "198.51.100.7", "198.51.100.8", PROXIES) == "198.51.100.7"


def test_garbage_real_ip_falls_back_to_peer() -> None:
    assert client_ip("10.0.0.5", None, "nonsense", PROXIES) == "10.0.0.5"


def test_real_ip_ignored_from_untrusted_peer() -> None:
    assert client_ip("198.51.100.1", None, "198.51.100.8", PROXIES) == "198.51.100.1"
