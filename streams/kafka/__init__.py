"""Kafka from the outside: the events' wire format, creating topics, publishing, reading lag.

Whatever the Kafka client raises because the broker cannot be reached becomes
``KafkaUnavailable`` here, at the edge, so callers (the CLI, the worker's start-up) see one
error with its exit code.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from columnist.errors import Unavailable


class KafkaUnavailable(Unavailable):
    hint = "start it (make kafka-up) or set COLUMNIST_KAFKA"


@contextmanager
def kafka_errors(bootstrap: str) -> Iterator[None]:
    """The Kafka client's connection failures as KafkaUnavailable naming the broker; the
    client's own log lines about them are held back meanwhile (the error says it once)."""
    from aiokafka.errors import KafkaError

    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        yield
    except KafkaUnavailable:
        raise
    except (KafkaError, OSError, TimeoutError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        if "Unable to bootstrap" in text:  # then a list of address tuples: nothing a person acts on
            text = "no broker answered"
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {text[:300]}") from err
    finally:
        client_log.setLevel(level)
