"""HTTP routes of the api service, one module per area."""
