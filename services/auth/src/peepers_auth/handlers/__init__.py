"""Use cases of the auth service: plain async functions over the ports in ``ports.py``.

Views parse requests and shape responses; everything that decides lives here.
"""

from peepers_auth.handlers.broker import TokenGrant, access_token, force_refresh
from peepers_auth.handlers.deps import AuthDeps, KeyedLocks, flush_outbox
from peepers_auth.handlers.login import LoginDone, LoginStart, complete_login, start_login
from peepers_auth.handlers.sessions import Dashboard, dashboard, disconnect, logout

__all__ = [
    "AuthDeps",
    "Dashboard",
    "KeyedLocks",
    "LoginDone",
    "LoginStart",
    "TokenGrant",
    "access_token",
    "complete_login",
    "dashboard",
    "disconnect",
    "flush_outbox",
    "force_refresh",
    "logout",
    "start_login",
]
