"""The alerting service: metric rules, the durable alert lifecycle and notification fan-out."""
