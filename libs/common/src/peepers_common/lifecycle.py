"""The lifecycle shape every adapter that owns a connection shares (STYLE.md 5.4)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """``async with`` calls `start()` on the way in and `aclose()` on the way out.

    Subclasses implement both; `aclose()` must be safe to call twice.
    """

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
