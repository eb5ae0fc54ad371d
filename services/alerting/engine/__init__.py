"""The pure core of alerting: sliding windows of samples, aggregations, and the alert
state machine. Nothing here does I/O or reads a clock; callers pass `now`."""
