"""Error events end to end on the real broker and database: an application's exceptions,
sent by the OpenTelemetry Python SDK's OTLP/HTTP log exporter (`logger.exception(...)`
through the SDK's logging handler) or as `/v1/errors` JSON, reach the writer's `errors`
table grouped by fingerprint, and the api's `/{tenant}/errors/...` routes answer them,
each tenant seeing only its own."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aio_pika.abc import AbstractConnection
from aiohttp.test_utils import TestClient
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from shared.ingest_tokens import mint_token
from shared.signing import SigningKeys
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support.eventually import eventually
from tests.support.metric_sink import MetricSink

KEYS = SigningKeys.parse("e1:errors-token-secret-0123")


def token(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(KEYS, tenant)}"}


@pytest.fixture
async def ingest(start_ingest: Started, start_writer: Started) -> TestClient:
    writer = await start_writer()
    client = await start_ingest(token_keys=KEYS)
    await ready(writer)
    await ready(client)
    return client


@pytest.fixture
async def api(start_api: Started) -> TestClient:
    return await start_api()


async def stored(db: asyncpg.Connection, n: int, tenant: str | None = None) -> list[Any]:
    """Wait until the errors table holds `n` rows (of `tenant`); returns them, oldest first."""

    async def rows() -> list[Any]:
        return list(
            await db.fetch(
                "SELECT * FROM errors WHERE $1::text IS NULL OR tenant_id = $1"
                " ORDER BY occurred_at, id",
                tenant,
            )
        )

    return await eventually(rows, lambda r: len(r) >= n, what=f"{n} error rows")


# --- what an application does -----------------------------------------------------------


def charge(amount: int) -> None:
    if amount < 0:
        raise ValueError(f"negative amount {amount}")


def checkout(amount: int, twice: bool) -> None:
    if twice:
        charge(amount)  # the same error, raised through another line of this function
    else:
        charge(amount)


def refund(amount: int) -> None:
    charge(amount)  # the same error, from another function


def _send_with_sdk(endpoint: str, headers: dict[str, str]) -> list[LogRecordExportResult]:
    """An application logging exceptions through the OTel SDK (blocking: run in a thread)."""
    results: list[LogRecordExportResult] = []

    class Recording(OTLPLogExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            results.append(result := super().export(batch))
            return result

    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = Recording(endpoint=endpoint, headers=headers)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log = logging.getLogger("belfry-test-app")
    log.propagate = False
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    log.addHandler(handler)
    try:
        log.info("an ordinary line: not an error")
        for call in (lambda: checkout(-1, False), lambda: checkout(-2, True), lambda: refund(-3)):
            try:
                call()
            except ValueError:
                log.exception("payment failed")
        provider.force_flush(10_000)
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    return results


# --- tests ------------------------------------------------------------------------------


# Applications still log through the SDK's own handler (deprecated in favour of
# opentelemetry-instrumentation-logging, which sends the same records): that is the
# sender this test stands for, so its deprecation is not ours to report.
@pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk`:DeprecationWarning")
async def test_otel_sdk_exceptions_are_grouped_and_answered(
    ingest: TestClient, api: TestClient, db: asyncpg.Connection
) -> None:
    key = await new_tenant(db, "acme")
    endpoint = str(ingest.make_url("/v1/logs"))
    results = await asyncio.to_thread(_send_with_sdk, endpoint, token("acme"))
    assert results and all(r is LogRecordExportResult.SUCCESS for r in results)

    rows = await stored(db, 3)
    assert len(rows) == 3  # the info line is not an error
    assert {r["tenant_id"] for r in rows} == {"acme"}
    assert {r["type"] for r in rows} == {"ValueError"}
    assert [r["message"] for r in rows] == [
        "negative amount -1",
        "negative amount -2",
        "negative amount -3",
    ]
    assert all("Traceback (most recent call last)" in r["stack"] for r in rows)
    labels = [orjson.loads(r["labels"]) for r in rows]
    # The resource's attributes, as for metrics (the SDK adds service.instance.id).
    assert all(lb["service"] == "checkout" and lb["instance"] for lb in labels)
    # checkout's two lines: one group; refund: another.
    assert rows[0]["fingerprint"] == rows[1]["fingerprint"] != rows[2]["fingerprint"]

    stats = await api.get("/acme/errors/stats", headers=bearer(key))
    assert stats.status == 200
    body = await stats.json()
    assert body["total"] == 3 and body["fingerprints"] == 2
    top, other = body["groups"]
    assert top["fingerprint"] == rows[0]["fingerprint"] and top["count"] == 2
    assert top["type"] == "ValueError"
    assert top["first_seen"] == rows[0]["occurred_at"].isoformat()
    assert top["last_seen"] == rows[1]["occurred_at"].isoformat()
    assert top["sample"] == {"id": str(rows[1]["id"]), "message": "negative amount -2"}
    assert other["count"] == 1

    one = await api.get(f"/acme/errors/{rows[2]['id']}", headers=bearer(key))
    assert one.status == 200
    error = await one.json()
    assert error["message"] == "negative amount -3" and "in refund" in error["stack"]
    assert error["labels"] == labels[2]

    group = await api.get(f"/acme/errors/fingerprint/{top['fingerprint']}", headers=bearer(key))
    assert group.status == 200
    summary = await group.json()
    assert summary["count"] == 2
    assert summary["sample"]["id"] == str(rows[1]["id"])
    assert summary["first_seen"] == top["first_seen"]


async def test_json_errors_given_and_computed_fingerprints(
    ingest: TestClient,
    api: TestClient,
    db: asyncpg.Connection,
    amqp: AbstractConnection,
    prefix: str,
) -> None:
    key = await new_tenant(db, "acme")
    sink = await MetricSink(amqp, prefix).start()
    stack = (
        'Traceback (most recent call last):\n  File "/app/pay.py", line {n}, in pay\nKeyError: x'
    )
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    body = [
        {"type": "KeyError", "message": "x", "stack": stack.format(n=10), "ts": at.isoformat()},
        {"type": "KeyError", "message": "y", "stack": stack.format(n=99)},  # line moved
        {"type": "Timeout", "message": "db", "fingerprint": "db-timeout", "labels": {"db": "a"}},
        {"message": "db again", "fingerprint": "db-timeout", "labels": {"tenant": "other"}},
    ]
    resp = await ingest.post("/v1/errors", json=body, headers=token("acme"))
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"accepted": 4, "rejected": 0}
    one = {"type": "Solo", "message": "a single object"}
    resp = await ingest.post("/v1/errors", json=one, headers=token("acme"))
    assert resp.status == 202

    rows = await stored(db, 5)
    by_message = {r["message"]: r for r in rows}
    assert by_message["x"]["fingerprint"] == by_message["y"]["fingerprint"]
    assert len(by_message["x"]["fingerprint"]) == 32
    assert by_message["x"]["occurred_at"] == at
    assert by_message["db"]["fingerprint"] == by_message["db again"]["fingerprint"] == "db-timeout"
    assert by_message["db again"]["labels"] == '{"exported_tenant": "other"}'

    resp = await api.get("/acme/errors/fingerprint/db-timeout", headers=bearer(key))
    assert (await resp.json())["count"] == 2

    # The rules' view: errors_total increases per fingerprint, in the token's tenant.
    await sink.wait_for("errors_total")
    counts = await eventually(
        _async(
            lambda: {s["labels"]["fingerprint"]: s["value"] for s in sink.named("errors_total")}
        ),
        lambda c: len(c) == 3,
        what="three errors_total series",
    )
    assert counts["db-timeout"] == 2.0 and counts[by_message["x"]["fingerprint"]] == 2.0
    assert {s["kind"] for s in sink.named("errors_total")} == {"counter_delta"}
    assert {s["tenant"] for s in sink.named("errors_total")} == {"acme"}


def _async(fn: Any) -> Any:
    async def probe() -> Any:
        return fn()

    return probe


async def test_tenants_see_only_their_own_errors(
    ingest: TestClient, api: TestClient, db: asyncpg.Connection
) -> None:
    acme, rival = await new_tenant(db, "acme"), await new_tenant(db, "rival")
    # A body naming another tenant changes nothing: the tenant is the token's.
    item = {"type": "Boom", "message": "acme's", "fingerprint": "boom", "tenant": "rival"}
    resp = await ingest.post("/v1/errors", json=[item], headers=token("acme"))
    assert resp.status == 400  # `tenant` is not a field of an error
    item.pop("tenant")
    resp = await ingest.post("/v1/errors", json=[item], headers=token("acme"))
    assert resp.status == 202
    (row,) = await stored(db, 1)
    assert row["tenant_id"] == "acme"

    for path in (
        f"/acme/errors/{row['id']}",
        "/acme/errors/fingerprint/boom",
        "/acme/errors/stats",
    ):
        assert (await api.get(path, headers=bearer(rival))).status == 404
        assert (await api.get(path, headers=bearer(acme))).status == 200
    for path in (f"/rival/errors/{row['id']}", "/rival/errors/fingerprint/boom"):
        assert (await api.get(path, headers=bearer(rival))).status == 404
    stats = await (await api.get("/rival/errors/stats", headers=bearer(rival))).json()
    assert stats["total"] == 0 and stats["groups"] == []
    assert (await api.get("/acme/errors/stats")).status == 401


async def test_bad_input_is_a_4xx(
    ingest: TestClient, api: TestClient, db: asyncpg.Connection
) -> None:
    key = await new_tenant(db, "acme")
    acme = token("acme")
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/v1/errors", {"data": b"[]", "headers": acme}, 400),
        ("/v1/errors", {"data": b"{nope", "headers": acme}, 400),
        ("/v1/errors", {"data": b'"text"', "headers": acme}, 400),
        ("/v1/errors", {"json": [{"message": "x"}]}, 401),
        ("/v1/errors", {"json": [{"message": "x"}], "headers": token("belfry")}, 403),
        (
            "/v1/errors",
            {"data": b"[" + b'{"message":"x"},' * 20_000 + b"{}]", "headers": acme},
            413,
        ),
        (
            "/v1/logs",
            {
                "data": b"\xff\xfe garbage",
                "headers": {**acme, "Content-Type": "application/x-protobuf"},
            },
            400,
        ),
        ("/v1/logs", {"data": b"{}", "headers": {**acme, "Content-Type": "text/plain"}}, 415),
        (
            "/v1/logs",
            {
                "data": b'{"resourceLogs": ["AAA"]}',  # json_format.ParseDict took this
                "headers": {**acme, "Content-Type": "application/json"},
            },
            400,
        ),
        (
            "/v1/logs",
            {
                "data": b'{"resourceLogs": 3}',
                "headers": {**acme, "Content-Type": "application/json"},
            },
            400,
        ),
        (
            "/v1/logs",
            {
                "data": gzip.compress(b"\x00" * 40_000_000),
                "headers": {
                    **acme,
                    "Content-Type": "application/x-protobuf",
                    "Content-Encoding": "gzip",
                },
            },
            413,
        ),
    ]
    for path, kwargs, status in cases:
        resp = await ingest.post(path, **kwargs)
        assert resp.status == status, (path, status, await resp.text())

    bad_items = [
        {},  # neither type nor message
        {"message": "x", "fingerprint": "has space"},
        {"message": "x", "fingerprint": "f" * 129},
        {"message": "x", "type": "T" * 257},
        {"message": "a\u0000b"},
        {"message": "x", "labels": {"bad-name": "v"}},
        {"message": "x", "labels": {str(i): "v" for i in range(100)}},
        {"message": "x", "ts": "2026-01-01T00:00:00"},
        {"message": "x", "ts": "3000-01-01T00:00:00Z"},
        {"message": "x", "ts": 1e300},
        {"message": "x", "id": "not-a-uuid", "ts": 0},
        {"message": "x", "id": "0190a5d0-0000-7000-8000-000000000000"},
        {"message": 5},
        {"message": "x", "extra": 1},
        "a string",
    ]
    good = {"type": "Long", "message": "m" * 10_000, "stack": "s" * 100_000}
    resp = await ingest.post("/v1/errors", json=[*bad_items, good], headers=acme)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["accepted"] == 1 and answer["rejected"] == len(bad_items)
    assert [e["index"] for e in answer["errors"]] == list(range(len(bad_items)))
    (row,) = await stored(db, 1)
    assert len(row["message"]) == 4096 and len(row["stack"]) == 32 * 1024  # cut, kept

    for path in (
        "/acme/errors/not-a-uuid",
        "/acme/errors/0190a5d0-0000-7000-8000-000000000000",
        "/acme/errors/fingerprint/has%20space",
        "/acme/errors/fingerprint/unknown",
    ):
        assert (await api.get(path, headers=bearer(key))).status == 404, path
    # Ranges at datetime's ends or in the future: an answer, never an overflow (a 500).
    for query in ("from=9000-01-01", "to=0001-01-05", "from=0001-01-02&to=0001-01-03"):
        resp = await api.get(f"/acme/errors/stats?{query}", headers=bearer(key))
        assert resp.status == 200, query
        assert (await resp.json())["total"] == 0
    for query in ("from=yesterday", "to=2026-01-01&from=2026-02-01", "limit=0", "limit=x"):
        resp = await api.get(f"/acme/errors/stats?{query}", headers=bearer(key))
        assert resp.status == 400, query
        assert "error" in await resp.json()


async def test_otlp_json_logs_partial_success(ingest: TestClient, db: asyncpg.Connection) -> None:
    def record(attrs: dict[str, str], body: str = "") -> dict[str, Any]:
        return {
            "body": {"stringValue": body},
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
        }

    request = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "mailer"}}]
                },
                "scopeLogs": [
                    {
                        "logRecords": [
                            record({"exception.type": "SMTPError"}, "relay refused"),
                            record({}, "plain log line"),
                            record({"exception.message": "bad\u0000nul"}),
                        ]
                    }
                ],
            }
        ]
    }
    resp = await ingest.post(
        "/v1/logs", json=request, headers={**token("acme"), "Content-Type": "application/json"}
    )
    assert resp.status == 200
    answer = await resp.json()
    assert answer["partialSuccess"]["rejectedLogRecords"] == "1"
    assert "#2" in answer["partialSuccess"]["errorMessage"]
    exposition = await (await ingest.get("/metrics")).text()
    for outcome in ("ignored", "refused", "published"):
        line = f'belfry_ingest_errors_total{{outcome="{outcome}",protocol="otlp_logs"}}'
        assert line in exposition, outcome
    (row,) = await stored(db, 1)
    assert (row["type"], row["message"], row["labels"]) == (
        "SMTPError",
        "relay refused",
        '{"service": "mailer"}',
    )

    # protobuf, gzip'd, nothing refused: an empty ExportLogsServiceResponse
    empty = ExportLogsServiceRequest().SerializeToString()
    resp = await ingest.post(
        "/v1/logs",
        data=gzip.compress(empty),
        headers={
            **token("acme"),
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
        },
    )
    assert resp.status == 200
    parsed = ExportLogsServiceResponse.FromString(await resp.read())
    assert not parsed.HasField("partial_success")


async def test_a_retry_with_id_and_ts_is_stored_once(
    ingest: TestClient, db: asyncpg.Connection
) -> None:
    at = datetime.now(UTC).replace(microsecond=0).isoformat()
    item = {"id": "0190A5B2-7C3D-7E4F-8A9B-0C1D2E3F4A5B", "ts": at, "message": "retried"}
    for _ in range(2):
        resp = await ingest.post("/v1/errors", json=item, headers=token("acme"))
        assert resp.status == 202
    await ingest.post("/v1/errors", json={"message": "last"}, headers=token("acme"))
    rows = await stored(db, 2)
    assert [r["message"] for r in rows].count("retried") == 1
    assert str(rows[0]["id"]) == item["id"].lower()
