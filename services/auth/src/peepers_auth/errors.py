"""What goes wrong in the auth service, and how each is answered.

::

    PeepersError (peepers_common.errors)
    └── AuthError                         status + code for the error middleware
        ├── LoginRefused (400)            the callback cannot complete a login
        │   ├── LoginStateUnknown         no such state: expired, never issued or tampered
        │   ├── LoginStateReused          the state was already consumed (a replay)
        │   ├── LoginBrowserMismatch      the callback came from another browser
        │   ├── MlAuthorizationDenied     ML redirected back with error=... (access_denied)
        │   └── MlCodeRejected            ML refused the code (invalid_grant on exchange)
        ├── SiteUnknown (400)             /auth/login?site= names no configured site
        ├── SessionRequired (401)         no valid session cookie
        ├── CsrfRejected (403)            a form post without the session's CSRF token
        ├── SellerNotConnected (404)      the broker has no tokens for that seller
        ├── ReauthNeeded (409)            ML refused the refresh token: the seller must log in
        └── RefreshTimeout (503)          another replica's refresh did not finish in time

From ``peepers_common.errors`` the middleware also maps ``ServiceUnauthorized`` (401:
the internal API without valid service credentials), ``TokenUnavailable`` (503: ML's
token endpoint failed), ``MlApiError`` (502) and ``CacheUnavailable`` (503). The ML
adapter's ``ReauthRequired`` (invalid_grant) never escapes: the handlers turn it into
``MlCodeRejected`` at login and into ``SellerReauthRequired`` in the broker.

The error middleware renders seller-facing ones as HTML pages and ``/internal/*`` ones as
``{"error": code, "detail": ...}``.
"""

from __future__ import annotations

from typing import ClassVar

from peepers_common.errors import PeepersError


class AuthError(PeepersError):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "auth_error"
    title: ClassVar[str] = "Something went wrong"


class LoginRefused(AuthError):
    code = "login_refused"
    title = "We could not connect your Mercado Livre account"


class LoginStateUnknown(LoginRefused):
    code = "login_state_unknown"
    title = "This login link has expired"


class LoginStateReused(LoginRefused):
    code = "login_state_reused"
    title = "This login link was already used"


class LoginBrowserMismatch(LoginRefused):
    code = "login_browser_mismatch"
    title = "This login was started in another browser"


class MlAuthorizationDenied(LoginRefused):
    code = "ml_authorization_denied"
    title = "Mercado Livre did not authorize Peepers"

    def __init__(self, error: str, description: str | None) -> None:
        detail = f"Mercado Livre answered {error!r}"
        if description:
            detail += f": {description}"
        super().__init__(detail)
        self.error = error


class MlCodeRejected(LoginRefused):
    code = "ml_code_rejected"
    title = "Mercado Livre refused the authorization"


class SiteUnknown(AuthError):
    code = "site_unknown"
    title = "Unknown Mercado Livre site"


class SessionRequired(AuthError):
    status = 401
    code = "session_required"
    title = "Please log in"


class CsrfRejected(AuthError):
    status = 403
    code = "csrf_rejected"
    title = "This form has expired"


class SellerNotConnected(AuthError):
    status = 404
    code = "seller_not_connected"


class ReauthNeeded(AuthError):
    status = 409
    code = "reauth_required"


class RefreshTimeout(AuthError):
    status = 503
    code = "refresh_timeout"
