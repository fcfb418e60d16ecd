"""The vendors' shared HTTP layer: a timeout on every call, bounded retries with backoff, readable
errors, and logging that never shows a secret.

- Retries: 408, 429 (honouring `Retry-After`), 5xx, connection resets and refusals, truncated
  bodies and timeouts; at most `RetryPolicy.attempts` tries and `RetryPolicy.budget` seconds of
  waiting per request. Anything else fails at once with a `VendorError` saying what the status
  means (400, 401, 402 with the credits, 403, 404, 422, 429 ...).
- Authenticated calls go only to the base URL's host (which `keys.base_url` checked against the
  hosts allowed outside the graph) and never follow redirects, so a key cannot travel to another
  host; downloads carry no key at all (PiktID's CloudFront links and PICPIK's image URLs need none).
- Logs name the method, the path and the status; headers are redacted, bodies never logged, and
  every error message is scrubbed of the client's secrets.
- No connectivity probes: the only requests are the ones the caller asks for.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

logger = logging.getLogger("region_repair.vendors")

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
# Header and query names whose values are secrets (matched case-insensitively, as substrings).
SECRET_NAMES = ("authorization", "key", "token", "signature", "secret", "cookie", "password")
STATUS_MEANING = {
    400: "bad request", 401: "unauthorized: the key is missing, wrong or expired",
    402: "insufficient credits", 403: "forbidden", 404: "not found", 408: "request timeout",
    409: "conflict", 410: "gone", 413: "request too large", 422: "invalid parameters",
    429: "rate limited",
}
TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                    asyncio.TimeoutError)


class VendorError(RuntimeError):
    """A vendor call failed. `kind` is a short cause (auth, credits, forbidden, not_found,
    rate_limited, bad_request, server, timeout, connection, protocol, rejected, job_failed,
    config); `status` the HTTP status when there was one."""

    def __init__(self, vendor: str, kind: str, message: str, status: int | None = None):
        super().__init__(f"{vendor}: {message}")
        self.vendor, self.kind, self.status = vendor, kind, status


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4          # tries per request, the first included
    base_delay: float = 1.0    # backoff: base_delay * 2**n, with -20 % jitter
    max_delay: float = 16.0
    budget: float = 120.0      # seconds of waiting between tries, per request
    max_retry_after: float = 60.0  # a longer Retry-After ends the retries at once

    def delay(self, retry: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** retry) * random.uniform(0.8, 1.0)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 15.0
    read: float = 60.0      # longest silence while reading a response
    request: float = 180.0  # one whole try, upload or download included

    def client(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.request, connect=self.connect,
                                     sock_read=self.read)


def origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, lower-cased, default port dropped; None for
    any other scheme, a URL without a host, or one carrying user:password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    default = {"http": 80, "https": 443}[scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def redact_headers(headers: Any) -> dict[str, str]:
    return {name: "<redacted>" if any(s in name.lower() for s in SECRET_NAMES) else value
            for name, value in dict(headers or {}).items()}


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, "<redacted>" if any(s in k.lower() for s in SECRET_NAMES) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="<>")))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(payload: Any) -> str:
    """The human part of an error body, across the vendors' shapes."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, list):
        return "; ".join(filter(None, map(_detail, payload)))
    if not isinstance(payload, dict):
        return ""
    if "loc" in payload and "msg" in payload:  # FastAPI (OctoAI 422)
        return f"{'.'.join(map(str, payload['loc']))}: {payload['msg']}"
    if "field" in payload and "message" in payload:  # PiktID's detail entries
        return f"{payload['field']}: {payload['message']}" if payload["field"] else \
            str(payload["message"])
    # Photio puts its reason in `body` (the image's field on success; errors only come here).
    parts = [_detail(payload.get(key)) for key in ("error", "message", "Message", "detail",
                                                    "body")]
    return " - ".join(part for part in parts if part)[:300]


@dataclass
class Response:
    vendor: str
    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            excerpt = self.body[:80].decode("utf-8", "replace")
            raise VendorError(self.vendor, "protocol",
                              f"malformed JSON from {self.method} {urlsplit(self.url).path} "
                              f"(HTTP {self.status}): {excerpt!r}", self.status) from None


class HttpClient:
    """One vendor's HTTP calls. `auth` headers go only on API calls (`auth=True`); `secrets` are
    scrubbed from every error message; `key_hint` tells a 401 where the key comes from."""

    def __init__(self, session: aiohttp.ClientSession, vendor: str, base_url: str, *,
                 auth: dict[str, str] | None = None, secrets: Iterable[str] = (),
                 key_hint: str = "", retry: RetryPolicy = RetryPolicy(),
                 timeouts: Timeouts = Timeouts()):
        self.session, self.vendor = session, vendor
        self.base_url = base_url.rstrip("/")
        self.auth = auth or {}
        self.secrets = [s for s in secrets if s]
        self.key_hint, self.retry, self.timeouts = key_hint, retry, timeouts

    def url(self, path: str) -> str:
        return path if re.match(r"https?://", path) else self.base_url + "/" + path.lstrip("/")

    def _check_keyed(self, url: str) -> None:
        """A keyed call goes only to the base URL's origin (checked against the allowed hosts
        before the run); an absolute URL from a vendor's answer never gets the key."""
        target = origin(url)
        if target is None or target != origin(self.base_url):
            raise self.error("protocol", f"refused to send the key to {target or repr(url)}: "
                             f"not the base URL's host {origin(self.base_url)}")

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def error(self, kind: str, message: str, status: int | None = None) -> VendorError:
        return VendorError(self.vendor, kind, self.scrub(message), status)

    def status_error(self, response: Response, status: int | None = None,
                     payload: Any = None, attempts: int = 1) -> VendorError:
        """The readable error for an HTTP (or envelope) error status."""
        status = status or response.status
        if payload is None:
            try:
                payload = json.loads(response.body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                payload = response.body[:200].decode("utf-8", "replace").strip()
        detail = _detail(payload)
        where = f"{response.method} {urlsplit(response.url).path}"
        meaning = STATUS_MEANING.get(status, "server error" if status >= 500 else "error")
        text = f"HTTP {status} {meaning} ({where})"
        if status == 402 and isinstance(payload, dict):
            credits = [f"{label} {payload[key]:g}" for key, label in (
                ("required_credits", "required"), ("user_credits", "available"),
                ("in_progress_credits", "held by jobs in progress")) if
                isinstance(payload.get(key), (int, float))]
            text += ": " + (", ".join(credits) if credits else "no credit figures given")
        if detail:
            text += f": {detail}"
        if status == 401 and self.key_hint:
            text += f". {self.key_hint}"
        if attempts > 1:
            text += f" (after {attempts} attempts)"
        kind = {400: "bad_request", 401: "auth", 402: "credits", 403: "forbidden",
                404: "not_found", 410: "gone", 422: "bad_request", 429: "rate_limited"}.get(
                    status, "server" if status >= 500 else "http")
        return self.error(kind, text, status)

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      data: bytes | None = None, headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None, auth: bool = True,
                      passthrough: Iterable[int] = (),
                      envelope: Callable[[Response], tuple[int, Any] | None] | None = None,
                      retry: RetryPolicy | None = None) -> Response:
        """One call with retries. Statuses in `passthrough` come back to the caller instead of
        raising; `envelope` maps a 2xx answer that reports an error in its body (Photio's
        `status_code`) to (status, payload), which is then handled like an HTTP status."""
        retry = retry or self.retry
        url = self.url(path)
        if auth:
            self._check_keyed(url)
        send = {**(self.auth if auth else {}), **(headers or {})}
        started = time.monotonic()
        waited = 0.0
        for attempt in range(1, retry.attempts + 1):
            wait: float | None = None
            try:
                response = await self._send(method, url, send, json_body, data, params, auth)
            except TRANSPORT_ERRORS as exc:
                cause = _transport_cause(exc, self.timeouts)
                logger.debug("%s %s %s -> %s (try %d)", self.vendor, method, redact_url(url),
                             cause, attempt)
                if attempt == retry.attempts:
                    kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "connection"
                    raise self.error(kind, f"{method} {urlsplit(url).path}: {cause} "
                                     f"(after {attempt} attempts)") from None
            else:
                status, payload = response.status, None
                if 200 <= status < 300 and envelope is not None:
                    status, payload = envelope(response) or (status, None)
                if status < 300 or status in passthrough:
                    return response
                if status in (301, 302, 303, 307, 308):
                    raise self.error("protocol", f"{method} {urlsplit(url).path} redirected "
                                     f"(HTTP {status}); not followed with a key attached",
                                     status)
                if status not in RETRY_STATUSES or attempt == retry.attempts:
                    raise self.status_error(response, status, payload, attempt)
                if status == 429:
                    wait = retry_after(response.headers.get("Retry-After"))
                    if wait is not None and wait > min(retry.max_retry_after,
                                                       retry.budget - waited):
                        raise self.error("rate_limited", f"HTTP 429 rate limited ({method} "
                                         f"{urlsplit(url).path}): the server asks to wait "
                                         f"{wait:.0f} s, beyond the retry budget", 429)
            wait = retry.delay(attempt - 1) if wait is None else wait
            if waited + wait > retry.budget:
                raise self.error("timeout", f"{method} {urlsplit(url).path}: retry budget of "
                                 f"{retry.budget:g} s spent after {attempt} attempts "
                                 f"({time.monotonic() - started:.1f} s)")
            waited += wait
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, headers: dict[str, str], json_body: Any,
                    data: bytes | None, params: dict[str, str] | None, auth: bool) -> Response:
        start = time.monotonic()
        async with self.session.request(method, url, json=json_body, data=data, params=params,
                                        headers=headers, timeout=self.timeouts.client(),
                                        allow_redirects=not auth) as raw:
            body = await raw.read()
            response = Response(self.vendor, method, url, raw.status, dict(raw.headers), body)
        logger.debug("%s %s %s -> %d in %.2f s; sent headers %s", self.vendor, method,
                     redact_url(url), raw.status, time.monotonic() - start,
                     redact_headers(headers))
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    @asynccontextmanager
    async def stream(self, path: str, *, params: dict[str, str] | None = None,
                     idle: float = 45.0):
        """GET a long-lived stream (SSE): connect and read timeouts, no total; one try (the
        caller reconnects). Error statuses raise the readable error."""
        url = self.url(path)
        self._check_keyed(url)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect,
                                        sock_read=idle)
        async with self.session.get(url, params=params, headers={**self.auth,
                                    "Accept": "text/event-stream"}, timeout=timeout,
                                    allow_redirects=False) as raw:
            logger.debug("%s GET %s -> %d (stream); sent headers %s", self.vendor,
                         redact_url(url), raw.status, redact_headers(self.auth))
            if raw.status >= 300:
                body = await raw.read()
                raise self.status_error(Response(self.vendor, "GET", url, raw.status,
                                                 dict(raw.headers), body))
            yield raw


def _transport_cause(exc: BaseException, timeouts: Timeouts) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return (f"timed out (connect {timeouts.connect:g} s, read {timeouts.read:g} s, "
                f"whole request {timeouts.request:g} s)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection (reset) before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection dropped while reading the answer"
    return f"connection error ({type(exc).__name__}: {exc})"


def new_session() -> aiohttp.ClientSession:
    """A session that reads no proxy or .netrc settings from the environment (nothing is sent
    anywhere the caller did not name)."""
    return aiohttp.ClientSession(trust_env=False, timeout=Timeouts().client())
