"""ML error bodies, and the one exception the REST layer turns into them.

``SandboxError`` carries the HTTP status and ML's ``error`` code; the error middleware
renders ``{"message", "error", "status", "cause": []}``, ML's usual shape. OAuth and
rate-limit answers have their own shapes and are built where they happen.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

JSON_CT = "application/json;charset=UTF-8"


class SandboxError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "error": self.error,
            "status": self.status,
            "cause": [],
            **self.extra,
        }


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        charset="UTF-8",
        headers=headers,
    )


def raw_json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": JSON_CT})


def not_found(message: str) -> SandboxError:
    return SandboxError(404, "not_found", message)


def bad_request(message: str, error: str = "bad_request") -> SandboxError:
    return SandboxError(400, error, message)


def forbidden(message: str, error: str = "forbidden") -> SandboxError:
    return SandboxError(403, error, message)
