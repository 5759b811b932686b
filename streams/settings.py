"""All settings in one typed object, read from COLUMNIST_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from columnist.errors import UsageError
from columnist.printable import printable
from columnist.records import ImageLimits

LIMITS = ImageLimits()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLUMNIST_", extra="ignore")

    # storage
    db: str = "chdb://~/.columnist/db"
    """ClickHouse DSN: chdb://PATH (the embedded engine; ~ and relative paths allowed) or http://host:8123."""
    cluster: Optional[str] = None
    """When set, DDL runs ON CLUSTER with Replicated engines."""

    # model and vocabulary
    model: str = "tiny-clip"
    """'tiny-clip' (built in), 'mock', or a model directory."""
    vocab: str = "space"
    """A built-in vocabulary name or a YAML file: the default vocabulary (its view is also
    ``image_columns``), applied by a worker when none of its name was applied yet."""
    accept_vocabularies: str = ""
    """Vocabulary names a worker applies when pushed, separated by ',' (empty: any name)."""
    runtime: str = "auto"
    """'auto' (what the model directory names), 'onnxruntime', 'openvino' (bf16 where the CPU
    has it) or 'openvino-f32'."""
    batch_size: int = Field(32, ge=1, le=1024)
    threads: int = Field(0, ge=0, le=1024)
    """onnxruntime intra-op threads; 0 means one per core."""

    # Kafka
    kafka: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (a managed Kafka cluster)."""
    kafka_sasl_mechanism: str = ""
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with kafka_username and kafka_password."""
    kafka_username: str = ""
    kafka_password: str = ""
    kafka_ca_file: str = ""
    """A CA bundle to check the brokers' TLS certificates (default: the system's)."""
    group: str = "columnist"
    topic_images: str = "columnist.images"
    topic_vocab: str = "columnist.vocab"
    topic_deadletter: str = "columnist.deadletter"
    partitions: int = 2
    """Partitions of the images topic (the vocabulary and dead-letter topics have one)."""
    batch_within: float = 1.0
    """Seconds the worker waits to fill a batch before processing what it has."""
    write_group: int = Field(4, ge=1, le=64)
    """Most batches a busy worker writes in one set of statements: a scored batch waits (up to
    a second) for the full batches already on their way after it (a backlog). 1: every batch
    on its own."""
    session_timeout: float = 10.0
    """Seconds before Kafka gives a silent (crashed) worker's partitions to another."""
    encode_timeout: float = Field(300.0, ge=0)
    """Seconds one call into the image tower may take for each batch_size inputs (images,
    video frames), from when it starts; beyond, its runtime is taken as stuck and the worker
    (or `tag`) exits with code 6, a worker's batch unacked (it comes again). 0: no limit."""
    decode_timeout: float = Field(300.0, ge=0)
    """Seconds decoding one file may take (a video: beyond video_deadline); beyond, its decoder
    is taken as stuck: the file's content is listed in <run_dir>/decode-stuck.txt and refused
    from then on, and the process exits with code 7 (a worker's batch comes again without it)."""

    # where images may come from
    image_roots: str = ""
    """Folders that file:// URIs may read, separated by ':' (empty: none)."""
    http_allow: str = ""
    """Hosts that http(s):// URIs may fetch from, separated by ',' (empty: http is off)."""
    max_image_bytes: int = LIMITS.max_bytes
    """Largest image accepted from any URI, data: URIs included."""
    max_image_pixels: int = LIMITS.max_pixels
    """Largest image (width x height, read from its header before decoding)."""
    max_video_bytes: int = LIMITS.max_video_bytes
    """Largest video file (read into memory while its frames are sampled)."""
    video_frames: int = Field(LIMITS.video_frames, ge=1, le=10_000)
    """Frames kept of one video at most."""
    video_interval: float = Field(LIMITS.video_interval, gt=0)
    """Seconds between the frames kept of a video (scene changes add frames between)."""
    video_seconds: float = Field(LIMITS.video_seconds, gt=0)
    """Seconds of one video decoded at most."""
    video_deadline: float = Field(LIMITS.video_deadline, gt=0)
    """Seconds of wall time one video's decoding may take."""
    decode_threads: int = Field(LIMITS.decode_threads, ge=0, le=64)
    """Threads decoding a batch's images (0: one per core); they run beside inference."""
    http_timeout: float = 20.0
    """Seconds for a whole http(s) fetch: connect, headers and body."""
    allow_hard_links: bool = False
    """Read files with several hard links (one of their names may lie outside the roots)."""

    # the worker
    worker_port: int = 6066
    """Names the worker's control socket, ``<run_dir>/worker-<port>.sock`` (one per worker on a machine)."""
    metrics_port: int = 0
    """Serve /metrics (Prometheus) and /health on this TCP port; 0: off."""
    kafka_unhealthy_after: float = 60.0
    """Seconds without an answer from Kafka after which /health says the worker is unhealthy."""
    metrics_bind: str = "127.0.0.1"
    """The address of the metrics page (0.0.0.0 only inside a container network)."""
    run_dir: str = "~/.columnist/run"
    """Where a worker puts its control socket (mode 0600, in a 0700 folder)."""
    query_timeout: float = 30.0
    """Seconds a query through the control page may run."""
    query_max_rows: int = 100_000
    query_max_bytes: int = 20_000_000
    """Largest result of a query through the control page (it fails beyond, never truncates)."""
    sidecars: Literal["off", "accepted", "tentative"] = "off"
    """A worker keeps the XMP sidecars of the images it stores (and re-scores) current, with the
    accepted (or accepted and tentative) attributes as keywords; only under the image roots."""
    sidecar_naming: Literal["append", "replace"] = "append"
    """A new sidecar's name: IMG_0001.jpg.xmp (append) or IMG_0001.xmp (replace)."""
    replay_chunks: int = 0
    """Replays run in this many checkpointed chunks (by a hash of image_id, at most 64);
    0 sizes them to about 10,000,000 score rows each (stored embeddings x attributes replayed)."""

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_bytes, self.max_image_pixels, self.decode_threads, self.max_video_bytes,
                           self.video_frames, self.video_interval, self.video_seconds, self.video_deadline,
                           self.decode_timeout)

    @property
    def roots(self) -> list[Path]:
        return [Path(p).expanduser().resolve() for p in self.image_roots.split(":") if p.strip()]

    def kafka_client_options(self) -> dict:
        """Connection options for aiokafka clients (security protocol, SASL, TLS)."""
        options: dict = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_username,
                           sasl_plain_password=self.kafka_password)
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            options["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ca_file or None)
        return options

    @property
    def accepted_vocabularies(self) -> set[str]:
        return {n.strip() for n in self.accept_vocabularies.split(",") if n.strip()}

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir).expanduser()

    @property
    def control_socket(self) -> Path:
        """The worker's control page (worker.control): one per worker port on a machine."""
        return self.run_path / f"worker-{self.worker_port}.sock"

    @property
    def allowed_hosts(self) -> set[str]:
        return {h.strip().lower() for h in self.http_allow.split(",") if h.strip()}


class BadSetting(UsageError):
    """A COLUMNIST_* variable whose value the settings refuse."""

    hint = "fix the variable named, or unset it for its default"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        raise BadSetting("; ".join(f"COLUMNIST_{'_'.join(map(str, e['loc'])).upper()}={printable(e.get('input'), 80)}: "
                                   f"{e['msg']}" for e in err.errors())) from None
