"""One Prometheus registry per app: what `/metrics` of that app serves.

Every app's metrics are objects registered on the app's own `CollectorRegistry` (under
the `PROMETHEUS` key), never module globals of prometheus_client's default `REGISTRY`:
two apps in one process (the tests run many) keep their own counts. A service's
metrics module defines a class taking the registry (`AlertingMetrics(registry)`); the
composition root builds it once, after `shared.httpobs.add_observability` made the
registry, and hands it to whatever increments it.

Each app's registry also has the process collectors (`process_*`, `python_*`) of its
own: the dashboard and the health view read them.

A service's metrics (alerting, ingest, writer, api alike): attributes of one
`<Service>Metrics(registry)` class (hot label children bound once as attributes);
`create_app` stores `<Service>Metrics(app_registry(app))` under an AppKey after
`add_observability`; whatever counts takes it as a parameter, handlers read
`request.app[KEY]`. A service that polls queue depths keeps
`queue_messages_gauge(registry)` in that class and passes it to
`queue_depth`/`side_queue_depth`.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

PROMETHEUS = web.AppKey("prometheus_registry", CollectorRegistry)


def new_registry() -> CollectorRegistry:
    """A registry for one app, with the process collectors of its own."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def app_registry(app: web.Application) -> CollectorRegistry:
    """The app's registry; made on the first call (`add_observability` makes it for every
    service)."""
    registry = app.get(PROMETHEUS)
    if registry is None:
        registry = app[PROMETHEUS] = new_registry()
    return registry
