"""Local processes that the demo, the benchmarks and the tests start and stop: a Kafka
broker (deploy/kafka/kafka.sh) and `columnist worker` subprocesses. Each is stopped by the
PID it was started with, and only that."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class LocalKafka:
    """A KRaft broker on 127.0.0.1 with its own data folder and ports."""

    def __init__(self, data: Path, port: int | None = None):
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "KAFKA_DATA": str(data), "KAFKA_PORT": str(self.port),
                    "KAFKA_CONTROLLER_PORT": str(free_port()), "PYTHON": sys.executable,
                    "COLUMNIST_KAFKA": self.bootstrap}

    def start(self) -> "LocalKafka":
        started = subprocess.run([str(KAFKA_SH), "up"], env=self.env, capture_output=True, text=True, timeout=600)
        if started.returncode != 0:
            raise RuntimeError(f"local Kafka did not start:\n{started.stdout}\n{started.stderr}")
        return self

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SH), "down"], env=self.env, capture_output=True, timeout=120)

    def __enter__(self) -> "LocalKafka":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class WorkerProcess:
    """A `columnist worker` subprocess, configured by COLUMNIST_* variables in ``env``."""

    def __init__(self, env: dict, log_path: Path):
        from columnist.settings import Settings
        from columnist.worker.control_client import WorkerClient

        self.env = {**os.environ, **{k: str(v) for k, v in env.items()}}
        self.log_path = log_path
        port = int(self.env["COLUMNIST_WORKER_PORT"])
        run_dir = self.env.get("COLUMNIST_RUN_DIR", Settings.model_fields["run_dir"].default)
        self.client = WorkerClient(Settings(run_dir=run_dir, worker_port=port).control_socket, timeout=60)
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "columnist", "worker"], cwd=REPO, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self) -> dict | None:
        try:
            return self.client.status()
        except (ConnectionError, OSError, ValueError, RuntimeError):
            return None

    def wait_ready(self, timeout: float = 120) -> dict:
        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; log:\n{self.tail()}")
            status = self.status()
            return status if status and status["ready"] else None
        return wait_until(ready, timeout, "the worker to become ready")

    def counters(self) -> dict:
        return self.client.status()["counters"]

    def query(self, sql: str) -> list[list]:
        return self.client.query(sql)[1]

    def scalar(self, sql: str) -> Any:
        return self.query(sql)[0][0]

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Resident memory now (VmRSS) or at its peak (VmHWM), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_exit(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if shutdown hangs (Faust can wait forever on a crashed agent)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
