"""The decoders' label cache stays bounded in entries and in bytes, whatever tenants send."""

from __future__ import annotations

from services.ingest.intake import names
from services.ingest.intake.cache import LabelCache
from services.ingest.intake.names import otlp_label_name, otlp_metric_name


def test_the_cache_is_emptied_rather_than_grown_past_its_entry_bound() -> None:
    cache: LabelCache[int] = LabelCache(max_entries=3, max_bytes=1 << 20)
    for i in range(3):
        cache.put((b"k%d" % i,), i)
    assert len(cache) == 3 and cache.get((b"k0",)) == 0
    cache.put((b"k3",), 3)
    assert len(cache) == 1 and cache.get((b"k0",)) is None and cache.get((b"k3",)) == 3


def test_the_cache_is_bounded_in_bytes_and_skips_huge_keys() -> None:
    cache: LabelCache[int] = LabelCache(max_entries=1000, max_bytes=16_000)
    cache.put((b"x" * 5000,), 1)  # over max_bytes / 16: not kept at all
    assert len(cache) == 0
    for i in range(20):
        cache.put((b"%03d" % i + b"y" * 900,), i)  # ~1 kB each: never over 16 kB in all
        assert len(cache) <= 16
    assert cache.get((b"019" + b"y" * 900,)) == 19


def test_over_long_names_are_refused_without_being_cached() -> None:
    huge = "a" * 10_000
    assert otlp_metric_name(huge) is None and otlp_label_name(huge) is None
    assert huge not in names._metric_names and huge not in names._label_names
    assert otlp_metric_name("http.server.duration") == "http_server_duration"
