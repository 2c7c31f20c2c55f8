"""The few HTML pages a seller sees. Every dynamic value goes through ``html.escape``."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from peepers_auth.models import SellerRecord

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.5rem}.status{font-weight:bold}.connected{color:#176f2c}"
    ".reauth_required,.disconnected{color:#a33}form{display:inline-block;margin-right:1rem}"
    "button,a.button{font-size:1rem;padding:.5rem 1rem}dt{font-weight:bold}"
)

_STATUS_TEXT = {
    "connected": "Connected",
    "reauth_required": "Needs re-authorisation: log in with Mercado Livre again",
    "disconnected": "Disconnected",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)} - Peepers</title><style>{_STYLE}</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>"
    )


def landing(sites: list[str], default_site: str) -> str:
    links = "".join(
        f'<li><a href="/auth/login?site={_e(site)}">{_e(site)}</a></li>'
        for site in sites
        if site != default_site
    )
    return page(
        "Connect your Mercado Livre account",
        "<p>Peepers keeps your orders, catalog and questions up to date.</p>"
        f'<p><a class="button" id="login" href="/auth/login?site={_e(default_site)}">'
        f"Log in with Mercado Livre ({_e(default_site)})</a></p>"
        f"<details><summary>Another site</summary><ul>{links}</ul></details>",
    )


def error(title: str, detail: str) -> str:
    return page(
        title,
        f'<p class="error">{_e(detail)}</p>'
        '<p><a href="/auth/login" id="retry">Start again</a> or '
        '<a href="/auth/">go to the start page</a>.</p>',
    )


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def dashboard(seller_id: int, seller: SellerRecord | None, csrf_token: str) -> str:
    status = seller.status if seller is not None else "disconnected"
    rows = f"<dt>Seller id</dt><dd id='seller-id'>{_e(seller_id)}</dd>"
    if seller is not None:
        rows += (
            f"<dt>Account</dt><dd id='nickname'>{_e(seller.nickname)}</dd>"
            f"<dt>Site</dt><dd id='site'>{_e(seller.site_id)}</dd>"
            f"<dt>Connected since</dt><dd>{_e(_when(seller.connected_at))}</dd>"
        )
        if seller.status == "connected":
            rows += f"<dt>Access valid until</dt><dd>{_e(_when(seller.expires_at))}</dd>"
    csrf = f'<input type="hidden" name="csrf_token" value="{_e(csrf_token)}">'
    actions = (
        f'<form method="post" action="/auth/logout">{csrf}'
        '<button type="submit" id="logout">Log out</button></form>'
    )
    if status == "connected":
        actions += (
            f'<form method="post" action="/auth/disconnect">{csrf}'
            '<button type="submit" id="disconnect">Disconnect this account</button></form>'
        )
    else:
        actions += '<a class="button" href="/auth/login" id="reconnect">Log in again</a>'
    return page(
        "Your Mercado Livre account",
        f'<p>Status: <span class="status {_e(status)}" id="status">'
        f"{_e(_STATUS_TEXT[status])}</span></p><dl>{rows}</dl>{actions}",
    )
