"""A private single-node Kafka that a test may stop and restart.

The shared stack's broker serves other engineers' tests, so a test that needs Kafka to go
away starts its own (`peepers_proof.broker`: the jars scripts/stack fetched, free
loopback ports, storage in the test's temporary directory).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

from peepers_devstack.child import bound
from peepers_proof.broker import STARTED_MARKER, Broker, kafka_libs

__all__ = ["PrivateBroker", "kafka_libs"]


class PrivateBroker:
    def __init__(self, directory: Path, libs: Path) -> None:
        self._broker = Broker.in_directory(directory, libs)
        self.port = self._broker.port
        self._process: subprocess.Popen[bytes] | None = None
        self.log = directory / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return self._broker.bootstrap

    def format(self) -> None:
        self._broker.format()

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603
                bound(self._broker.command()),  # a pytest killed outright takes it along
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while STARTED_MARKER not in self.log.read_bytes().split(b"stopped")[-1]:
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
