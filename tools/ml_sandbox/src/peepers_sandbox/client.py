"""A small typed client for the admin API, usable against any running sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp


class SandboxAdminError(RuntimeError):
    pass


class SandboxAdmin:
    """Calls ``/_admin`` on a sandbox; the caller owns the session."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, f"{self.base_url}/_admin{path}", json=body) as resp:
            data = await resp.json()
            if resp.status >= 400:
                msg = f"{method} /_admin{path} -> {resp.status}: {data}"
                raise SandboxAdminError(msg)
            return data

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/info")
        return result

    async def mint_token(
        self, user_id: int, *, app_id: int | None = None, expires_in: int | None = None
    ) -> dict[str, Any]:
        """Issue a token pair without the browser dance (a new grant for the app)."""
        body: dict[str, Any] = {"user_id": user_id}
        if app_id is not None:
            body["app_id"] = app_id
        if expires_in is not None:
            body["expires_in"] = expires_in
        result: dict[str, Any] = await self._call("POST", "/tokens", body)
        return result

    async def expire_token(self, access_token: str) -> None:
        await self._call("POST", "/tokens/expire", {"access_token": access_token})

    async def revoke(self, user_id: int, *, app_id: int | None = None) -> int:
        body = {"app_id": app_id} if app_id is not None else {}
        return int((await self._call("POST", f"/sellers/{user_id}/revoke", body))["revoked"])

    async def advance_clock(self, seconds: float) -> None:
        await self._call("POST", "/clock/advance", {"seconds": seconds})

    async def set_faults(self, **faults: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PUT", "/faults", faults)
        return result

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def set_rate_limits(self, rules: list[dict[str, Any]], **options: Any) -> None:
        await self._call("PUT", "/rate-limits", {"rules": rules, **options})

    async def rate_limit_counters(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/rate-limits"))["counters"])

    async def reset_rate_limit_counters(self) -> None:
        await self._call("DELETE", "/rate-limits/counters")

    async def patch_api(self, **changes: Any) -> None:
        await self._call("PATCH", "/api", changes)

    async def patch_notifier(self, **changes: Any) -> None:
        await self._call("PATCH", "/notifier", changes)

    async def patch_app(self, app_id: int, **changes: Any) -> None:
        await self._call("PATCH", f"/apps/{app_id}", changes)

    async def event(self, kind: str, **params: Any) -> dict[str, Any]:
        """Make something happen (``new_order``, ``payment``...); returns the changed object."""
        result: dict[str, Any] = (await self._call("POST", f"/events/{kind}", params))["result"]
        return result

    async def start_activity(self, rate: float, mix: dict[str, float] | None = None) -> None:
        await self._call("POST", "/activity", {"rate": rate, "mix": mix})

    async def activity(self) -> dict[str, Any]:
        """Whether the activity runs, and its rate and mix."""
        result: dict[str, Any] = await self._call("GET", "/activity")
        return result

    async def stop_activity(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", "/activity")
        return result

    async def seller_state(self, seller_id: int) -> dict[str, Any]:
        """Everything the sandbox holds for the seller (`peepers_sandbox.snapshot`)."""
        result: dict[str, Any] = await self._call("GET", f"/sellers/{seller_id}/state")
        return result

    async def notifier_summary(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/notifier")
        return result

    async def notifier_attempts(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return list((await self._call("GET", f"/notifier/attempts?{query}"))["attempts"])

    async def wait_notifier_idle(
        self, within_s: float = 10.0, interval: float = 0.02
    ) -> dict[str, Any]:
        """Poll until no notification is pending; raise TimeoutError at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            summary = await self.notifier_summary()
            if summary["pending"] == 0:
                return summary
            if loop.time() >= deadline:
                msg = f"notifier still has {summary['pending']} pending after {within_s} s"
                raise TimeoutError(msg)
            await asyncio.sleep(interval)
