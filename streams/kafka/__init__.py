"""Kafka from the outside: creating topics, publishing events, reading lag."""
