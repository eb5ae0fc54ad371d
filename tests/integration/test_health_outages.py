"""`/health` of every service kind with a dependency cut through a TCP proxy: Little
Bell's shape, 200 "healthy" while the service can work, 503 "unhealthy" naming the
dependency (and no internals) while it cannot, back to 200 when the dependency returns.
`/livez` stays 200 throughout: it checks the process only."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient

from services.alerting.app import create_app as create_alerting
from services.alerting.keys import AlertingDeps
from services.alerting.notify.settings import NotifySettings
from services.alerting.settings import AlertingSettings
from services.api.app import create_app as create_api
from services.api.keys import ApiDeps
from services.api.settings import ApiSettings
from services.ingest.settings import IngestSettings
from services.writer.settings import WriterSettings
from shared.settings import CommonSettings
from shared.signing import SigningKeys
from tests.alerting.conftest import FakeClock
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support.eventually import eventually
from tests.support.tcpproxy import TcpProxy

SHAPE = {"status", "service", "version", "timestamp"}


async def health(client: TestClient) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/health")
    return resp.status, await resp.json()


async def assert_healthy(client: TestClient, service: str) -> None:
    _, body = await eventually(
        lambda: health(client), lambda r: r[0] == 200, what=f"{service} /health 200"
    )
    assert set(body) == SHAPE
    assert body["status"] == "healthy" and body["service"] == service


async def assert_unhealthy(client: TestClient, service: str, dependency: str) -> None:
    """503 naming `dependency`; no reasons (the route is public): only names."""
    _, body = await eventually(
        lambda: health(client), lambda r: r[0] == 503, what=f"{service} /health 503"
    )
    assert set(body) == SHAPE | {"unhealthy"}
    assert body["status"] == "unhealthy" and body["service"] == service
    assert dependency in body["unhealthy"]
    assert all(isinstance(name, str) and " " not in name for name in body["unhealthy"])
    assert (await client.get("/livez")).status == 200


def via(
    common: CommonSettings, *, amqp: TcpProxy | None = None, pg: TcpProxy | None = None
) -> CommonSettings:
    return replace(
        common,
        amqp_url=amqp.url_for(common.amqp_url) if amqp else common.amqp_url,
        database_url=pg.url_for(common.database_url) if pg else common.database_url,
    )


def alerting_settings_for(common: CommonSettings) -> AlertingSettings:
    """As tests/alerting's fixture: ticks only when told, notifications at once."""
    return AlertingSettings(
        common=replace(common, service="alerting", metrics_interval=3600),
        eval_interval=3600,
        group_wait=0,
        outbox_interval=0.05,
        external_url="http://alerting.test",
        notify=NotifySettings(max_attempts=1, egress_allow=(ipaddress.ip_network("127.0.0.0/8"),)),
    )


def api_settings_for(common: CommonSettings, signing: SigningKeys) -> ApiSettings:
    return ApiSettings(
        common=replace(common, service="api"),
        signing=signing,
        public_url="http://tracking.test",
        migrate_on_start=False,  # the template database is migrated already
    )


async def test_ingest_health_follows_the_broker(
    start_ingest: Started, ingest_settings: IngestSettings, rabbit_proxy: TcpProxy
) -> None:
    settings = replace(ingest_settings, common=via(ingest_settings.common, amqp=rabbit_proxy))
    ingest = await start_ingest(settings)
    await ready(ingest)
    await assert_healthy(ingest, "ingest")
    rabbit_proxy.cut()
    await assert_unhealthy(ingest, "ingest", "broker")
    rabbit_proxy.heal()
    await assert_healthy(ingest, "ingest")


async def test_writer_health_follows_the_database(
    start_writer: Started, writer_settings: WriterSettings, pg_proxy: TcpProxy
) -> None:
    settings = replace(
        writer_settings,
        backoff_min=0.05,
        backoff_max=0.3,
        common=via(writer_settings.common, pg=pg_proxy),
    )
    writer = await start_writer(settings)
    await ready(writer)
    await assert_healthy(writer, "writer")
    pg_proxy.cut()
    await assert_unhealthy(writer, "writer", "database")
    pg_proxy.heal()
    await assert_healthy(writer, "writer")


async def test_writer_health_follows_the_broker(
    start_writer: Started, writer_settings: WriterSettings, rabbit_proxy: TcpProxy
) -> None:
    writer = await start_writer(
        replace(writer_settings, common=via(writer_settings.common, amqp=rabbit_proxy))
    )
    await ready(writer)
    rabbit_proxy.cut()
    await assert_unhealthy(writer, "writer", "broker")
    rabbit_proxy.heal()
    await assert_healthy(writer, "writer")


async def test_alerting_health_follows_the_database(
    start_app: Any, common: CommonSettings, pg_proxy: TcpProxy
) -> None:
    settings = alerting_settings_for(via(common, pg=pg_proxy))
    alerting = await start_app(create_alerting(settings, AlertingDeps(clock=FakeClock())))
    await ready(alerting)
    await assert_healthy(alerting, "alerting")
    pg_proxy.cut()
    await assert_unhealthy(alerting, "alerting", "database")
    pg_proxy.heal()
    await assert_healthy(alerting, "alerting")


async def test_api_health_follows_the_database_not_its_optional_broker(
    start_app: Any,
    common: CommonSettings,
    signing: SigningKeys,
    pg_proxy: TcpProxy,
    rabbit_proxy: TcpProxy,
) -> None:
    settings = api_settings_for(via(common, amqp=rabbit_proxy, pg=pg_proxy), signing)
    api = await start_app(create_api(settings, ApiDeps(self_report=True)))
    await ready(api)
    await assert_healthy(api, "api")
    # The api uses the broker only for its self-reports: degraded, still able to work.
    rabbit_proxy.cut()

    async def detailed() -> str:
        resp = await api.get("/health/detailed")
        return str((await resp.json())["status"])

    await eventually(detailed, lambda s: s == "degraded", what="api degraded")
    assert (await api.get("/health")).status == 200
    pg_proxy.cut()
    await assert_unhealthy(api, "api", "database")
    pg_proxy.heal()
    rabbit_proxy.heal()
    await assert_healthy(api, "api")
