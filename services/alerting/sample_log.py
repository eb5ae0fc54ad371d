"""The sample windows in Postgres (`alert_samples`), so they survive a restart.

Kept samples are journaled in memory by the SampleStore (a tuple append on the hot path)
and written here in one COPY per evaluation tick and once more at shutdown; rows older
than the longest rule window are deleted on the same tick. At start the rows inside each
watched metric's window are read back into the store. What a `kill -9` loses: the samples
since the last tick (ALERTING_EVAL_INTERVAL_SECONDS, 5 s by default); a Postgres crash
empties the (unlogged) table.
"""

from __future__ import annotations

import logging

import asyncpg
import orjson

from services.alerting.engine.windows import SampleStore

log = logging.getLogger("belfry.alerting.samples")

COLUMNS = ("tenant_id", "metric", "labels", "kind", "ts", "value")
# Rows read back per round trip at start.
FETCH = 50_000


def _labels_text(key: tuple[tuple[str, str], ...]) -> str:
    return orjson.dumps(key).decode()


async def flush(
    conn: asyncpg.Connection, store: SampleStore, now: float, prune: bool = True
) -> int:
    """Write the journal and (on a tick, when the store watches what the rules need)
    prune; the journal is put back when the write fails, so a database away for a while
    loses nothing until the journal's own bound."""
    rows = store.drain()
    try:
        if rows:
            texts: dict[tuple[tuple[str, str], ...], str] = {}  # one dump per label set
            records = []
            for tenant, metric, key, kind, ts, value in rows:
                text = texts.get(key)
                if text is None:
                    text = texts[key] = _labels_text(key)
                records.append((tenant, metric, text, kind, ts, value))
            await conn.copy_records_to_table("alert_samples", records=records, columns=COLUMNS)
        if prune:
            await conn.execute(
                "DELETE FROM alert_samples WHERE ts < $1", now - store.longest_retention()
            )
    except BaseException:
        store.journal[:0] = rows
        raise
    return len(rows)


async def reload(conn: asyncpg.Connection, store: SampleStore, now: float) -> int:
    """Put the stored samples of watched metrics inside their windows back into `store`
    (without journaling them again). Returns how many were kept."""
    oldest = now - store.longest_retention()
    journaling, store.journaling = store.journaling, False
    kept = 0
    try:
        async with conn.transaction():
            cursor = conn.cursor(
                "SELECT tenant_id, metric, labels, kind, ts, value FROM alert_samples"
                " WHERE ts >= $1 AND ts <= $2 ORDER BY ts",
                oldest,
                now,
                prefetch=FETCH,
            )
            labels_of: dict[str, dict[str, str]] = {}
            async for tenant, metric, text, kind, ts, value in cursor:
                labels = labels_of.get(text)
                if labels is None:
                    labels = labels_of[text] = dict(orjson.loads(text))
                kept += store.add_ts(tenant, metric, labels, ts, value, kind)
    finally:
        store.journaling = journaling
    log.info("sample windows reloaded", extra={"samples": kept})
    return kept
