"""The baseline for bench/ingest.py: a bare aiohttp server that reads the body and answers 200.

python bench/ingest_bare.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "accepted"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/mercadolibre", ok)
    # The same event loop as ingest (uvloop), so the comparison is of the work, not the loop.
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
