"""JSON logging for every service: one object per line, with service and trace ids.

Secrets are defended in depth: settings hold them as ``SecretStr``, and this module also
masks anything shaped like an ML access or refresh token before a record is written.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final

from pythonjsonlogger.json import JsonFormatter

from peepers_common.tracing import current_trace

# ML access tokens look like APP_USR-<app>-<date>-<hex>-<user>; refresh tokens TG-<hex>-<user>.
_TOKEN: Final = re.compile(r"\b(APP_USR|TG)-[0-9A-Za-z-]{8,}")


def redact(text: str) -> str:
    return _TOKEN.sub(lambda m: f"{m[1]}-***", text)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        trace = current_trace.get()
        record.trace_id = trace.trace_id if trace else None
        record.span_id = trace.span_id if trace else None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def configure_logging(service: str, level: str = "INFO", *, json: bool = True) -> None:
    """Route the root logger to stderr as JSON lines (or plain text for humans)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    if json:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{service}{trace_id}{span_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(trace_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
