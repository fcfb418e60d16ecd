"""What every fake vendor shares: an aiohttp app on 127.0.0.1 in its own thread, a record of the
requests it saw, fixed latency, and faults injected on demand per route.

    with serve(FakePhotio()) as fake:
        fake.fail("POST /v1/inference/regen", Fault.status(429, retry_after="0.1"))
        ... call fake.url ...

A route is "METHOD /canonical/path" as aiohttp names it (e.g. "GET /jobs/{job_id}/status").
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image


@dataclass
class Fault:
    kind: str                 # slow | status | malformed | drop | redirect
    seconds: float = 0.0      # slow: the delay before answering normally
    status: int = 500
    retry_after: str | None = None
    body: Any = None
    location: str = ""        # redirect: where to

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def status_code(cls, status: int, retry_after: str | None = None, body: Any = None
                    ) -> Fault:
        return cls("status", status=status, retry_after=retry_after, body=body)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> Fault:
        """Answer with a redirect to `location` (307 and 308 keep the method and body)."""
        return cls("redirect", status=status, location=location)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering (a reset)."""
        return cls("drop")


@dataclass
class Seen:
    method: str
    path: str
    route: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)


class FakeVendor:
    """Subclasses add their routes in `routes(app)` and may skip auth for some routes."""

    name = "fake"
    open_routes: tuple[str, ...] = ()  # routes that need no key

    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.seen: list[Seen] = []
        self.url = ""
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 2 ** 20)
        self.routes(self.app)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def fail(self, route: str, fault: Fault, times: int = 1) -> None:
        self.faults[route].extend([fault] * times)

    def authorized(self, request: web.Request) -> web.Response | None:
        """None when the request may proceed, else the vendor's auth error."""
        return None

    def requests_to(self, route: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.route == route]

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource else request.path}"
        self.seen.append(Seen(request.method, request.path, route, dict(request.headers),
                              await request.read(), dict(request.query)))
        if self.latency:
            await asyncio.sleep(self.latency)
        queue = self.faults.get(route)
        fault = queue.popleft() if queue else None
        if fault is not None:
            if fault.kind == "slow":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                body = fault.body if fault.body is not None else {"error": f"injected "
                                                                           f"{fault.status}"}
                return web.json_response(body, status=fault.status, headers=headers)
            elif fault.kind == "malformed":
                return web.Response(text='{"status": "ok", "truncated', status=200,
                                    content_type="application/json")
            elif fault.kind == "redirect":
                return web.Response(status=fault.status, headers={"Location": fault.location})
            elif fault.kind == "drop":
                request.transport.abort()
                return web.Response()
        if route not in self.open_routes:
            denied = self.authorized(request)
            if denied is not None:
                return denied
        return await handler(request)


class _Served:
    def __init__(self, fake: FakeVendor):
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.fake.app, handle_signals=False, access_log=None,
                                    shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.fake.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def serve(fake: FakeVendor):
    """Run `fake` on 127.0.0.1 (a free port, `fake.url`) for the duration of the block."""
    served = _Served(fake)
    served.start()
    try:
        yield fake
    finally:
        served.stop()


# --- image helpers shared by the fakes ----------------------------------------------------------
def decode(data: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def unbase64(text: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[1]
    return base64.b64decode(text, validate=True)


def edit(image: np.ndarray, where: np.ndarray, candidate: int = 0, shift: int = 0) -> np.ndarray:
    """The fakes' deterministic 'generation': invert the pixels `where` is true, offset per
    candidate so candidates differ; `shift` then moves the whole frame (a vendor's drift)."""
    out = image.copy()
    out[where] = np.clip(255 - image[where].astype(np.int32) + 37 * candidate, 0, 255)
    if shift:
        out = np.roll(out, (shift, shift), axis=(0, 1))
    return out


def fit(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape != (height, width):
        mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return mask
