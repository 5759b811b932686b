"""Kafka from the outside: the events' wire format, creating topics, publishing, reading lag.

Whatever the Kafka client raises because the broker cannot be reached becomes
``KafkaUnavailable`` here, at the edge, so callers (the CLI, the worker's start-up) see one
error with its exit code.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from columnist.errors import Unavailable


class KafkaUnavailable(Unavailable):
    hint = "start it (make kafka-up) or set COLUMNIST_KAFKA"


@contextmanager
def kafka_errors(bootstrap: str) -> Iterator[None]:
    """The Kafka client's connection failures as KafkaUnavailable naming the broker."""
    from aiokafka.errors import KafkaError

    try:
        yield
    except KafkaUnavailable:
        raise
    except (KafkaError, OSError, TimeoutError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {text[:300]}") from err
