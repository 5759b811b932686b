"""The service: settings, the ClickHouse store, the batch tagger, the CLI (and later the stream)."""
