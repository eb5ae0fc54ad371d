"""One Prometheus registry per app: what `/metrics` of that app serves.

Every app's metrics are objects registered on the app's own `CollectorRegistry` (under
the `PROMETHEUS` key), never module globals of prometheus_client's default `REGISTRY`:
two apps in one process (the tests run many) keep their own counts. A service's
metrics module defines a class taking the registry (`AlertingMetrics(registry)`); the
composition root builds it once, after `shared.httpobs.add_observability` made the
registry, and hands it to whatever increments it.

Transitional: a service whose metrics are still module globals asks for
`default_registry=True` (the default of `add_observability` until every service is
migrated), and its `/metrics` then serves the default REGISTRY too, as it did before.
An app on its own registry gets the process collectors (`process_*`, `python_*`) of
its own instead, so both kinds expose the same process figures.

Migrating a service (alerting is the example): its module globals become attributes of
one `<Service>Metrics(registry)` class (same names, help, labels, buckets; hot label
children bound once as attributes); `create_app` passes `default_registry=False` to
`add_observability`, then stores `<Service>Metrics(app_registry(app))` under an AppKey;
whatever counts takes it as a parameter, handlers read `request.app[KEY]`. A service
that polls queue depths keeps `queue_messages_gauge(registry)` in that class and passes
it to `queue_depth`/`side_queue_depth`. Once no service relies on the default registry,
`default_registry`, `_DefaultRegistry` and selfreport's `_default_queue_gauge` go.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric

PROMETHEUS = web.AppKey("prometheus_registry", CollectorRegistry)


class _DefaultRegistry:
    """prometheus_client's default REGISTRY (module-global metrics and the process
    collectors) as one collector of an app's registry. It has no `describe`, so the
    app's registry does not claim its names: the default registry checks those itself."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def new_registry(*, default_registry: bool = False) -> CollectorRegistry:
    """A registry for one app: with the process collectors of its own, or (transitional,
    see the module docstring) serving prometheus_client's default REGISTRY as well."""
    registry = CollectorRegistry()
    if default_registry:
        registry.register(_DefaultRegistry())
    else:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def app_registry(app: web.Application, *, default_registry: bool = True) -> CollectorRegistry:
    """The app's registry; made on the first call (`add_observability` makes it for every
    service; `default_registry` only matters then)."""
    registry = app.get(PROMETHEUS)
    if registry is None:
        registry = app[PROMETHEUS] = new_registry(default_registry=default_registry)
    return registry
