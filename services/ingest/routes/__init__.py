"""HTTP routes of the ingest service, one module per endpoint."""
