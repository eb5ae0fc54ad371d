"""ingest: pixel, click and batch-track HTTP endpoints → hit events on RabbitMQ.

No database. Every accepted hit is confirmed by the broker or fsync'd to the local
spool before the response leaves.
"""
