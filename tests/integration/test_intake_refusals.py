"""The metric intake refuses what it must, each protocol in its own terms, never with a
500 and never by reading what it refuses: no token, a bad one, the `belfry` tenant,
corrupt protobuf, bad snappy, a gzip bomb, non-finite values, 10,000 labels, a declared
100 MB body, unknown content types; a tenant over its rate is told to retry later; with
the broker cut, samples are spooled (2xx) and arrive after it heals."""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import replace
from typing import Any

import cramjam
import orjson
import pytest
from aio_pika.abc import AbstractConnection
from aiohttp.test_utils import TestClient

from services.ingest.intake.limits import LimitSettings
from services.ingest.intake.protos import RpcStatus
from services.ingest.keys import INTAKE
from services.ingest.settings import IngestSettings
from shared.contracts import ContractError, validate_envelope
from shared.ingest_tokens import mint_token
from shared.signing import SigningKeys
from tests.conftest import Started, start_broker_proxy
from tests.integration.helpers import broker_up, ready
from tests.support.eventually import eventually
from tests.support.metric_sink import MetricSink
from tests.support.remote_write import HEADERS as RW
from tests.support.remote_write import remote_write_body, write_request

KEYS = SigningKeys.parse("m1:intake-token-secret-0123")
OTHER_KEYS = SigningKeys.parse("zz:other-secret-0123456")
TS = 1_764_560_000_000
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


def bearer(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(KEYS, tenant)}"}


def otlp_json(points: list[dict[str, Any]], attributes: list[dict[str, Any]] = ()) -> bytes:  # type: ignore[assignment]
    """An OTLP/JSON request with one gauge `temp` of `points`."""
    for point in points:
        point.setdefault("attributes", list(attributes))
        point.setdefault("timeUnixNano", str(TS * 1_000_000))
    metric = {"name": "temp", "gauge": {"dataPoints": points}}
    return orjson.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]
                    },
                    "scopeMetrics": [{"metrics": [metric]}],
                }
            ]
        }
    )


@pytest.fixture
async def sink(amqp: AbstractConnection, prefix: str) -> MetricSink:
    return await MetricSink(amqp, prefix).start()


@pytest.fixture
async def ingest(start_ingest: Started) -> TestClient:
    client = await start_ingest(token_keys=KEYS)
    await ready(client)
    return client


async def post(
    client: TestClient, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with client.post(path, data=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


ROUTES = [
    ("/v1/metrics", otlp_json([{"asDouble": 1.0}]), JSON),
    ("/api/v1/write", remote_write_body([({"__name__": "up"}, [(1, TS)])]), RW),
    ("/v1/samples", b'[{"name": "up", "value": 1}]', JSON),
]


@pytest.mark.parametrize(("path", "body", "headers"), ROUTES, ids=["otlp", "rw", "samples"])
async def test_who_may_write(
    ingest: TestClient, path: str, body: bytes, headers: dict[str, str]
) -> None:
    for auth, status in [
        ({}, 401),
        ({"Authorization": "Basic YWNtZTp4"}, 401),
        ({"Authorization": "Bearer " + mint_token(KEYS, "acme")[:-3] + "AAA"}, 401),
        (
            {"Authorization": f"Bearer {mint_token(OTHER_KEYS, 'acme')}"},
            401,
        ),
        (bearer("belfry"), 403),
    ]:
        code, answer_headers, answer = await post(ingest, path, body, {**headers, **auth})
        assert code == status, (auth, answer)
        assert answer_headers["Content-Type"].startswith("application/json")
        assert json.loads(answer)["error"]
        if status == 401:
            assert answer_headers["WWW-Authenticate"].startswith("Bearer")
    code, _, answer = await post(ingest, path, body, {**headers, **bearer()})
    assert code in (200, 202, 204), answer


async def test_the_tenant_is_the_tokens_never_the_bodys(
    ingest: TestClient, sink: MetricSink
) -> None:
    claims = otlp_json([{"asDouble": 2.0}], [{"key": "tenant", "value": {"stringValue": "globex"}}])
    assert (await post(ingest, "/v1/metrics", claims, {**JSON, **bearer("acme")}))[0] == 200
    samples = await sink.wait_for("temp")
    assert [(s["tenant"], s["labels"]) for s in samples] == [
        ("acme", {"service": "web", "exported_tenant": "globex"})
    ]
    # What was published is what consumers accept as metric.v2; a tampered copy is not.
    for envelope in sink.envelopes:
        validate_envelope(envelope)
    bad = {**sink.envelopes[0], "data": {"samples": [{"name": "temp", "value": None, "ts": 1}]}}
    with pytest.raises(ContractError, match="samples"):
        validate_envelope(bad)


def _status(body: bytes, protobuf: bool) -> tuple[int, str]:
    if protobuf:
        status = RpcStatus.FromString(body)
        return status.code, status.message
    doc = json.loads(body)
    return doc["code"], doc["message"]


async def test_otlp_refusals(ingest: TestClient) -> None:
    token = bearer()
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (b"\x0a\xff\xff\xff\xff\x0f garbage", PROTOBUF, 400),  # corrupt protobuf
        (b"{not json", JSON, 400),
        (b'{"resourceMetrics": 7}', JSON, 400),
        (b"temp 1", {"Content-Type": "text/plain"}, 415),
        # gzip whose deflate data is corrupt (an invalid block type).
        (GZIP_HEADER + b"\xff\xff\xff garbage", {**PROTOBUF, "Content-Encoding": "gzip"}, 400),
    ]
    for body, headers, status in cases:
        code, answer_headers, answer = await post(ingest, "/v1/metrics", body, {**headers, **token})
        assert code == status, answer
        protobuf = answer_headers["Content-Type"] == "application/x-protobuf"
        assert protobuf == (headers["Content-Type"] == "application/x-protobuf")
        assert _status(answer, protobuf)[1]


async def test_otlp_partial_success_for_refused_points(
    ingest: TestClient, sink: MetricSink
) -> None:
    many = [{"key": f"k{i}", "value": {"stringValue": "v"}} for i in range(10_000)]
    body = otlp_json([{"asDouble": 1.0}, {"asDouble": "NaN"}, {"asDouble": "Infinity"}])
    code, _, answer = await post(ingest, "/v1/metrics", body, {**JSON, **bearer()})
    assert code == 200
    doc = json.loads(answer)
    assert doc["partialSuccess"]["rejectedDataPoints"] == "2"
    assert "non_finite" in doc["partialSuccess"]["errorMessage"]
    code, _, answer = await post(
        ingest, "/v1/metrics", otlp_json([{"asDouble": 3.0}], many), {**JSON, **bearer()}
    )
    assert code == 200
    assert "too_many_labels" in json.loads(answer)["partialSuccess"]["errorMessage"]
    samples = await sink.wait_for("temp")
    assert [s["value"] for s in samples] == [1.0]


async def test_remote_write_refusals(ingest: TestClient, sink: MetricSink) -> None:
    token = bearer()
    many = {"__name__": "wide", **{f"l{i}": "v" for i in range(10_000)}}
    nan = float("nan")
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (b"\xff\xff\xff\xff\x7f not snappy", RW, 400, "snappy"),
        (
            bytes(cramjam.snappy.compress_raw(b"\xff\xff garbage")),
            RW,
            400,
            "WriteRequest",
        ),
        (remote_write_body([(many, [(1, TS)])]), RW, 400, "too_many_labels"),
        (
            write_request([({"__name__": "up"}, [(1, TS)])]),
            {**RW, "Content-Encoding": "gzip"},
            415,
            "snappy",
        ),
        (
            remote_write_body([({"__name__": "up"}, [(1, TS)])]),
            {**RW, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
            415,
            "1.0",
        ),
        (
            remote_write_body(
                [({"__name__": "ok"}, [(1, TS)]), ({"__name__": "bad"}, [(nan, TS)])]
            ),
            RW,
            400,
            "non_finite",
        ),
    ]
    for body, headers, status, says in cases:
        code, _, answer = await post(ingest, "/api/v1/write", body, {**headers, **token})
        assert code == status, answer
        assert says in json.loads(answer)["error"]
    # The valid series of a partly refused request was stored (Prometheus won't resend).
    samples = await sink.wait_for("ok")
    assert [s["name"] for s in samples] == ["ok"]


async def test_plain_form_refusals(ingest: TestClient, sink: MetricSink) -> None:
    token = bearer()
    items = [
        {"name": "fine", "value": 1},
        {"name": "nan", "value": "NaN"},
        {"name": "9bad", "value": 1},
        {"name": "wide", "value": 1, "labels": {f"l{i}": "v" for i in range(10_000)}},
        {"name": "bucket", "value": 1, "kind": "histogram_bucket"},
        {"name": "later", "value": 1, "ts": 4_000_000_000},
    ]
    code, _, answer = await post(ingest, "/v1/samples", orjson.dumps(items), {**JSON, **token})
    assert code == 400
    doc = json.loads(answer)
    assert doc["accepted"] == 1 and doc["rejected"] == 5
    assert [e["index"] for e in doc["errors"]] == [1, 2, 3, 4, 5]
    for body, status in [(b"{}", 400), (b"[", 400), (b"[]", 400)]:
        assert (await post(ingest, "/v1/samples", body, {**JSON, **token}))[0] == status
    assert [s["name"] for s in await sink.wait_for("fine")] == ["fine"]


async def test_gzip_bomb_is_refused_without_inflating_it_whole(start_ingest: Started) -> None:
    ingest = await start_ingest(token_keys=KEYS, intake_max_decoded_bytes=4 << 20)
    await ready(ingest)
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # ~64 KB on the wire
    for path, headers in [("/v1/metrics", PROTOBUF), ("/v1/samples", JSON)]:
        code, _, answer = await post(
            ingest, path, bomb, {**headers, "Content-Encoding": "gzip", **bearer()}
        )
        assert code == 413, answer
    # A small gzip'd OTLP body is fine.
    small = gzip.compress(otlp_json([{"asDouble": 1.0}]))
    code, _, _ = await post(
        ingest, "/v1/metrics", small, {**JSON, "Content-Encoding": "gzip", **bearer()}
    )
    assert code == 200


@pytest.mark.parametrize("path", ["/v1/metrics", "/api/v1/write", "/v1/samples"])
async def test_a_declared_100_mb_body_is_refused_before_it_is_read(
    ingest: TestClient, path: str
) -> None:
    """Only the headers are sent: the 413 comes back without waiting for the body."""
    content_type = "application/x-protobuf" if path != "/v1/samples" else "application/json"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Authorization: Bearer {mint_token(KEYS, 'acme')}\r\n"
        f"Content-Length: {100 << 20}\r\n\r\n"
    )
    assert ingest.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.server.port)
    try:
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413", status_line


async def test_over_the_rate_is_429_with_retry_after(start_ingest: Started) -> None:
    limits = LimitSettings(samples_per_second=0.01, burst_samples=3)
    ingest = await start_ingest(token_keys=KEYS, intake_limits=limits)
    await ready(ingest)
    ok = [{"name": "up", "value": 1}] * 3
    code, _, _ = await post(ingest, "/v1/samples", orjson.dumps(ok), {**JSON, **bearer()})
    assert code == 202
    for path, body, headers in ROUTES:
        code, answer_headers, answer = await post(ingest, path, body, {**headers, **bearer()})
        assert code == 429, answer
        assert int(answer_headers["Retry-After"]) >= 1
    # Another tenant has its own bucket.
    code, _, _ = await post(ingest, "/v1/samples", orjson.dumps(ok), {**JSON, **bearer("globex")})
    assert code == 202
    text = await (await ingest.get("/metrics")).text()
    for protocol in ("otlp", "remote_write", "samples"):
        line = f'belfry_ingest_samples_refused_total{{protocol="{protocol}",reason="rate_limited"}}'
        assert line in text, protocol
    assert 'belfry_ingest_samples_total{outcome="published",protocol="samples"}' in text


async def test_broker_cut_spools_samples_and_they_arrive_after_heal(
    start_ingest: Started,
    ingest_settings: IngestSettings,
    sink: MetricSink,
) -> None:
    proxy = await start_broker_proxy()
    try:
        common = ingest_settings.common
        settings = replace(
            ingest_settings, common=replace(common, amqp_url=proxy.url_for(common.amqp_url))
        )
        ingest = await start_ingest(settings, token_keys=KEYS)
        await ready(ingest)
        app = ingest.app
        assert app is not None
        proxy.cut()
        await eventually(lambda: _available(app), lambda up: not up, what="broker marked down")
        for path, body, headers in ROUTES:
            code, _, answer = await post(ingest, path, body, {**headers, **bearer()})
            assert code in (200, 204, 202), answer
        assert app[INTAKE].publisher.spool.appended >= 3
        assert sink.samples() == []
        proxy.heal()
        await broker_up(ingest)
        await eventually(lambda: _count(sink), lambda n: n >= 3, timeout=30, what="spooled samples")
        assert sorted(s["name"] for s in sink.samples()) == ["temp", "up", "up"]
        assert {s["tenant"] for s in sink.samples()} == {"acme"}
    finally:
        await proxy.close()


async def _available(app: Any) -> bool:
    return bool(app[INTAKE].broker.available)


async def _count(sink: MetricSink) -> int:
    return len(sink.samples())


async def test_broker_away_and_spool_full_is_503_with_retry_after(
    start_ingest: Started, ingest_settings: IngestSettings
) -> None:
    proxy = await start_broker_proxy()
    try:
        common = ingest_settings.common
        settings = replace(
            ingest_settings,
            common=replace(common, amqp_url=proxy.url_for(common.amqp_url)),
            spool_max_bytes=4096,
        )
        ingest = await start_ingest(settings, token_keys=KEYS)
        await ready(ingest)
        app = ingest.app
        assert app is not None
        proxy.cut()
        await eventually(lambda: _available(app), lambda up: not up, what="broker marked down")
        items = orjson.dumps(
            [{"name": "fill", "value": i, "labels": {"n": str(i)}} for i in range(40)]
        )
        statuses = []
        for _ in range(20):  # ~1.5 kB a request into a 4 kB spool
            code, headers, answer = await post(ingest, "/v1/samples", items, {**JSON, **bearer()})
            statuses.append(code)
            if code == 503:
                assert int(headers["Retry-After"]) >= 1
                assert json.loads(answer)["error"]
                break
        assert statuses[0] == 202 and statuses[-1] == 503, statuses
        # What still fits is spooled (2xx); once nothing does, every protocol says 503.
        for path, body, headers in ROUTES:
            for _ in range(50):
                code, answer_headers, answer = await post(
                    ingest, path, body, {**headers, **bearer()}
                )
                if code == 503:
                    break
                assert code in (200, 202, 204), answer
            assert code == 503, answer
            assert int(answer_headers["Retry-After"]) >= 1
            if path == "/v1/metrics":  # a google.rpc.Status, code 14 (UNAVAILABLE)
                assert _status(answer, protobuf=False)[0] == 14
        text = await (await ingest.get("/metrics")).text()
        assert 'belfry_ingest_samples_total{outcome="spooled",protocol="samples"}' in text
    finally:
        await proxy.close()


async def test_readiness_covers_the_metrics_publisher_and_spool(ingest: TestClient) -> None:
    detailed = await (await ingest.get("/health/detailed")).json()
    for check in ("metrics_confirms", "metrics_spool"):
        assert detailed["dependencies"][check]["status"] == "healthy", detailed
