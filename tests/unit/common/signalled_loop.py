"""``python signalled_loop.py STUCK``: a service run by `run_until_signalled` (deadline 2 s).

It prints ``ready`` once its signal handlers are set. With STUCK ``1`` its stop never
finishes (it waits in ``drain_forever``, as a consumer whose ``stop()`` hangs); the
deadline must end it.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from peepers_common.process import run_until_signalled


async def drain_forever() -> None:
    await asyncio.Event().wait()


def main() -> None:
    stuck = sys.argv[1] == "1"
    logging.basicConfig(stream=sys.stdout, format="%(message)s")

    async def service(stop: asyncio.Event) -> None:
        print("ready", flush=True)
        await stop.wait()
        print("stopping", flush=True)
        if stuck:
            await asyncio.create_task(drain_forever(), name="drain")

    run_until_signalled(service, stop_within_s=2.0)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
