"""A private single-node Kafka that a test may stop and restart.

The shared stack's broker serves other engineers' tests, so a test that needs Kafka to go
away starts its own: the same Kafka jars scripts/stack fetched, on free loopback ports,
with storage in the test's temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kafka_libs() -> Path | None:
    found = sorted((ROOT / ".cache" / "kafka").glob("*/libs/.complete"))
    return found[-1].parent if found else None


class PrivateBroker:
    def __init__(self, directory: Path, libs: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self._controller_port = _free_port()
        self._libs = libs
        self._process: subprocess.Popen[bytes] | None = None
        self.log = directory / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            "-Xms64m",
            "-Xmx256m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # starts faster; throughput is not the point here
            f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{self._libs}/*",
            *args,
        ]

    def format(self) -> None:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self._controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self._controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                ]
            )
            + "\n"
        )
        cluster_id = _cluster_id()
        subprocess.run(  # noqa: S603 - our own fixed command line
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                "--standalone",
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603
                self._java("kafka.Kafka", str(self.directory / "server.properties")),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        marker = b"Kafka Server started"
        while marker not in self.log.read_bytes().split(b"stopped")[-1]:
            if self._process.poll() is not None or time.monotonic() > deadline:
                msg = f"private Kafka did not start; see {self.log}"
                raise RuntimeError(msg)
            time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """A clean stop, as an operator or a rolling restart would do it."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        with self.log.open("ab") as log:
            log.write(b"\n-- stopped --\n")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def _cluster_id() -> str:
    # As Kafka's own Uuid.randomUuid: never one starting with "-", which StorageTool's
    # command line would take for an option (one start in 64 failed that way).
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate
