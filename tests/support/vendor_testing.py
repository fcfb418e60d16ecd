"""Helpers for the vendor tests: fast retry and timeout settings, a small scene, and runs that are
always bounded in time (every client call goes through `bounded`)."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import contextmanager

import torch

from fake_vendors import ENV
from region_repair.pipelines.vendors import keys, remote
from region_repair.pipelines.vendors.http import HttpClient, RetryPolicy, Timeouts, new_session

# Small enough that a fault test takes well under a second, large enough to show the retries.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.02, max_delay=0.1, budget=5.0,
                         max_retry_after=2.0)
FAST_TIMEOUTS = Timeouts(connect=2.0, read=1.0, request=3.0)
LIMIT = 30.0  # no test's vendor call may take longer


def settings(endpoint: str, url: str, **overrides) -> remote.RemoteSettings:
    values = dict(base_url=url, retry=FAST_RETRY, timeouts=FAST_TIMEOUTS, poll_interval=0.02,
                  sse_idle=1.0, not_visible_delay=0.02, timeout=LIMIT, feather=0)
    return remote.RemoteSettings(endpoint, **{**values, **overrides})


def bounded(coroutine, limit: float = LIMIT):
    """Run a coroutine to completion, failing the test if it takes longer than `limit`."""
    return asyncio.run(asyncio.wait_for(coroutine, limit))


def allowing(endpoint: str, url: str, env=None) -> dict[str, str]:
    """The fakes' keys (or `env`) plus `url`'s origin allowed for the endpoint's vendor, as a
    user allows a self-hosted server: in the environment, never in the graph."""
    vendor = remote.Endpoint(endpoint).vendor
    return {**(ENV if env is None else env), keys.hosts_variable(vendor): url}


def run(image, mask, endpoint: str, url: str, references=None, env=None, **overrides):
    """run_remote against a fake (its host allowed); returns (result, seconds)."""
    start = time.monotonic()
    result = bounded(remote.run_remote(image, mask, settings(endpoint, url, **overrides),
                                       references, env=allowing(endpoint, url, env)))
    return result, time.monotonic() - start


async def with_client(vendor: str, url: str, use, auth=None, retry=FAST_RETRY,
                      timeouts=FAST_TIMEOUTS, secrets=()):
    """Call `use(http)` with an HttpClient for `vendor` at `url`, in a fresh session."""
    async with new_session() as session:
        return await use(HttpClient(session, vendor, url, auth=auth, secrets=secrets,
                                    key_hint=f"set the {vendor} key", retry=retry,
                                    timeouts=timeouts))


def scene(batch: int = 1, height: int = 48, width: int = 64):
    """A smooth image (cheap to encode) and a box mask in its middle."""
    ys = torch.linspace(0, 1, height)[:, None, None]
    xs = torch.linspace(0, 1, width)[None, :, None]
    image = torch.cat([ys.expand(height, width, 1), xs.expand(height, width, 1),
                       (ys * xs).expand(height, width, 1)], dim=-1)
    image = image[None].repeat(batch, 1, 1, 1).clone()
    image[1:] = 1 - image[1:]  # images of a batch differ
    mask = torch.zeros(1, height, width)
    mask[:, height // 4:height // 2, width // 4:width // 2] = 1
    return image, mask


def outside(result: torch.Tensor, image: torch.Tensor, mask: torch.Tensor):
    """Outside-mask pixels of every candidate, and of the matching input."""
    k = result.shape[0] // image.shape[0]
    keep = (mask.expand(image.shape[0], -1, -1) == 0).repeat(k, 1, 1)
    return result[keep], image.repeat(k, 1, 1, 1)[keep]


def inside_changed(result: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> float:
    k = result.shape[0] // image.shape[0]
    inside = (mask.expand(image.shape[0], -1, -1) > 0.5).repeat(k, 1, 1)
    changed = (result - image.repeat(k, 1, 1, 1)).abs().amax(-1) > 0.05
    return changed[inside].float().mean().item()


def interrupt_latency(endpoint: str, url: str, after: float = 0.3, **overrides) -> float:
    """Start a run whose interrupt is raised from `after` seconds on (as ComfyUI's flag is
    checked); return the seconds between the interrupt and the run's end. Default timeouts, so
    a wait that ignored the interrupt would last a minute."""
    start = time.monotonic()

    def check_cancel() -> None:
        if time.monotonic() - start > after:
            raise InterruptedError("interrupted")

    image, mask = scene()
    values = {"timeouts": Timeouts(), "prompt": "navy", **overrides}
    try:
        bounded(remote.run_remote(image, mask, settings(endpoint, url, **values),
                                  env=allowing(endpoint, url), check_cancel=check_cancel))
    except InterruptedError:
        return time.monotonic() - start - after
    raise AssertionError("the run ended without being interrupted")


@contextmanager
def silent_server():
    """A loopback URL that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
