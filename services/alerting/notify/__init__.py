"""Alert notification delivery: one consumer per channel type, retries through delay
queues, the egress (SSRF) guard, the delivery log and its API. See README.md here.

The alerting service calls `setup_notify(app)` (notify/wiring.py) once, after its own
database context is registered (delivery uses `DATABASE`) and before the app starts.
"""

from __future__ import annotations

from services.alerting.notify.metrics import NotifyMetrics

__all__ = ["NotifyMetrics"]
