"""``python -m peepers_proof.auth_host --topic-prefix P``: the auth service on topics behind P.

Auth's own entry point (``python -m peepers_auth``) publishes to the registry's topics;
the proof must not write its sellers into the shared ``peepers.sellers.v1`` and the auth
changelog other stacks restore from. This is the same composition root (settings from
``AUTH_*``, ``create_app``, ``run_app``) with the two topic names prefixed, as the
consumers' ``*_TOPIC_PREFIX`` does for them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aiohttp import web

from peepers_auth.app import create_app
from peepers_auth.settings import Settings
from peepers_common.logs import configure_logging
from peepers_common.topics import AUTH_SELLERS_CHANGELOG, PEEPERS_SELLERS


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="peepers_proof.auth_host", description=__doc__)
    parser.add_argument("--topic-prefix", required=True)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("auth", settings.log_level)
    app = create_app(
        settings,
        topic=args.topic_prefix + PEEPERS_SELLERS,
        changelog_topic=args.topic_prefix + AUTH_SELLERS_CHANGELOG,
    )
    web.run_app(app, host=settings.http_host, port=settings.http_port, access_log=None)


if __name__ == "__main__":
    main()
