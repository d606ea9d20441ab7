"""ASGI middleware of the API: request timing by route template, and body limits per route."""

from __future__ import annotations

import time

from prometheus_client import Histogram

from serving.api.wire import ApiError

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetrics:
    """ASGI middleware timing every request; labelled by route template (never the raw path,
    which holds user ids), method and status."""

    def __init__(self, app, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.histogram.labels(getattr(route, "path_format", "unmatched"), method, str(status)).observe(
                time.perf_counter() - start
            )


class BodyLimit:
    """ASGI middleware: a request body larger than its route's limit (``limits``, by route
    template; else ``default``) gets 413, judged by Content-Length and, for chunked bodies,
    by the bytes read so far. The check runs when the endpoint reads the body, after routing,
    so the 413 is rendered like every other error."""

    def __init__(self, app, limits: dict[str, int], default: int) -> None:
        self.app = app
        self.limits = limits
        self.default = default

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            limit = self.limits.get(getattr(scope.get("route"), "path_format", None), self.default)
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ApiError(
                    413,
                    "body_too_large",
                    f"request body is {int(declared)} bytes, over the limit of {limit} bytes of this route",
                )
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(413, "body_too_large", f"request body is over the limit of {limit} bytes of this route")
            return message

        await self.app(scope, limited_receive, send)
