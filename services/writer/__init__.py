"""writer: consumes hit batches from RabbitMQ and stores them in Postgres exactly once.

Rows are inserted with `ON CONFLICT DO NOTHING` on the event id minted at ingest, in one
transaction per batch, and messages are acked only after commit: a redelivery stores
nothing twice, a crash loses nothing.
"""
