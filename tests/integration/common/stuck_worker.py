"""``python stuck_worker.py APP_ID BOOTSTRAP STUCK``: a Faust worker run by `run_worker`.

With STUCK ``1`` one of its services never finishes stopping, as a worker whose stop
hangs mid-rebalance; the stop deadline must end it. Its data folder goes in the working
directory.
"""

from __future__ import annotations

import asyncio
import sys

import faust
from mode import Service

from peepers_common.consumer import ConsumerSettings
from peepers_common.faust_worker import run_worker
from peepers_common.settings import KafkaSettings


def main() -> None:
    app_id, bootstrap, stuck = sys.argv[1:4]
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", web_enabled=False)

    if stuck == "1":

        @app.service
        class Stuck(Service):
            async def on_stop(self) -> None:
                print("stuck in its stop", flush=True)
                await asyncio.Event().wait()

    settings = ConsumerSettings(
        app_id=app_id, kafka=KafkaSettings(bootstrap_servers=bootstrap), stop_within_s=3.0
    )
    run_worker("stuck", app, settings)


if __name__ == "__main__":
    main()
