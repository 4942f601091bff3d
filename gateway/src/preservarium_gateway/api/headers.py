"""Security headers on every response of the API and the console.

The console is served by the same listener as the API and holds a bearer token in the
browser, so a page must not be framed (clickjacking), must not load script from
anywhere else, and a response must not be sniffed into another content type. A route
that needs a different policy (the docs page's one inline script) sets its own
`Content-Security-Policy`, which is kept.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The console's own files only; `data:` images for inline SVG icons; no framing, no
# plugins, no <base> tricks, forms post only here.
POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
CSP = b"content-security-policy"
HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """ASGI middleware: nosniff, no framing, no referrer, and a default CSP."""

    def __init__(self, app: ASGIApp, *, policy: str = POLICY) -> None:
        self._app = app
        self._policy = policy.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(item for item in HEADERS if item[0] not in names)
                if CSP not in names:
                    headers.append((CSP, self._policy))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, secured_send)
