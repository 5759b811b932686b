"""The streaming worker: events, fetching, ingest, the Service, its Faust wiring and control page."""
