"""Who may use the HTTP service: an API key, a refusal to face the network without one, and opt-in CORS.

A server bound beyond loopback can be reached by anyone on the network, so ``check_bind`` refuses that unless a
key is set or the user says ``--insecure``. Clients send the key as ``Authorization: Bearer KEY`` (what curl,
Prometheus and load balancers can all send); ``/health`` stays open so a load balancer can probe it. A browser
cannot send that header while it loads a page, so when the web page is served, only the API's paths (``guarded``)
ask for it, and the page asks for the same key on its own login form (``web_page``). Browsers get no cross-origin
access unless origins are named (``--cors-origin``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Sequence
from typing import Any

from affectlab.errors import AffectlabError

__all__ = ["API_KEY_ENV", "OPEN_PATHS", "add_access_control", "api_key_from", "check_bind"]

API_KEY_ENV = "AFFECTLAB_API_KEY"
OPEN_PATHS = frozenset({"/health"})


def api_key_from(flag: str | None) -> str | None:
    """The key from ``--api-key``, else from ``$AFFECTLAB_API_KEY``; an empty key is refused."""
    key = flag if flag is not None else os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise AffectlabError(f"the API key is empty (--api-key or {API_KEY_ENV})")
    return key


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, api_key: str | None, insecure: bool) -> None:
    """Refuse to bind beyond loopback without an API key, unless ``insecure`` is asked for."""
    if not is_loopback(host) and api_key is None and not insecure:
        raise AffectlabError(
            f"--host {host} is reachable from other machines: set --api-key (or {API_KEY_ENV}), "
            "or pass --insecure to serve without one"
        )


def add_access_control(
    app: Any, api_key: str | None, cors_origins: Sequence[str] = (), guarded: frozenset[str] | None = None
) -> None:
    """Add the key check (the ``guarded`` paths, default every path, but never ``OPEN_PATHS``) and CORS to ``app``.

    CORS is added after the key check so that it runs first: a browser's preflight carries no key.
    """
    from starlette.responses import JSONResponse

    if api_key is not None:
        expected = f"Bearer {api_key}".encode()

        async def require_key(request: Any, call_next: Any) -> Any:
            path = request.url.path
            if path not in OPEN_PATHS and (guarded is None or path.rstrip("/") in guarded):
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    return JSONResponse(
                        {"detail": "missing or wrong API key: send 'Authorization: Bearer KEY'"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
            return await call_next(request)

        app.middleware("http")(require_key)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
