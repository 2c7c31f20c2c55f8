"""A single-node Kafka of one's own (KRaft, broker and controller in one JVM).

The shared stack's broker serves every engineer's tests, so whatever kills a broker (the
proof's ``kill:kafka``, ingest's broker-outage tests) starts its own: the Kafka jars
``scripts/stack`` fetched into ``.cache/kafka``, free loopback ports, storage in a
directory of the caller's. `Broker` formats the storage and gives the command line; the
caller runs the process (the proof through its supervisor, the tests with Popen).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from peepers_devstack.plan import LOOPBACK, free_port

ROOT = Path(__file__).resolve().parents[4]
# Set once Kafka is up: what a caller reading the log waits for.
STARTED_MARKER = b"Kafka Server started"


def kafka_libs(root: Path = ROOT) -> Path | None:
    """The newest complete Kafka download of ``scripts/stack``, or None."""
    found = sorted((root / ".cache" / "kafka").glob("*/libs/.complete"))
    return found[-1].parent if found else None


@dataclass(frozen=True)
class Broker:
    directory: Path
    libs: Path
    port: int
    controller_port: int

    @classmethod
    def in_directory(cls, directory: Path, libs: Path) -> Broker:
        return cls(directory, libs, free_port(), free_port())

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def config(self) -> Path:
        return self.directory / "server.properties"

    def java(self, *args: str) -> list[str]:
        return [
            "java",
            "-Xms64m",
            "-Xmx256m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # starts faster; throughput is not the point here
            f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            *args,
        ]

    def command(self) -> list[str]:
        """The broker's command line (after `format`)."""
        return self.java("kafka.Kafka", str(self.config))

    def format(self) -> None:
        """Write the configuration and format empty storage (once, before the first start)."""
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={LOOPBACK}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{LOOPBACK}:{self.port},"
                    f"CONTROLLER://{LOOPBACK}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{self.port}",
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
        format_args = ["format", "-t", cluster_id(), "-c", str(self.config), "--standalone"]
        subprocess.run(  # noqa: S603 - our own fixed command line
            self.java("kafka.tools.StorageTool", *format_args),
            check=True,
            capture_output=True,
            timeout=60,
        )


def cluster_id() -> str:
    # As Kafka's own Uuid.randomUuid: never one starting with "-", which StorageTool's
    # command line would take for an option (one start in 64 failed that way).
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate
