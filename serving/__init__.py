"""Self-hosted vendor endpoints: the five documented vendor APIs answered by this ComfyUI server
(docs/self-hosting.md). Off unless the owner turns them on; `register_endpoints` is the root
package's one hook, run at import, before ComfyUI adds its routes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .config import ConfigError, load

logger = logging.getLogger("region_repair.serving")


def workflows() -> list[str]:
    """Every shipped API workflow the endpoints build prompts from."""
    from . import octoai, photio, picpik, piktid
    return [photio.EMBEDDED, *photio.WITH_MODEL.values(), octoai.EMBEDDED, octoai.WITH_MODEL,
            picpik.EMBEDDED, picpik.WITH_MODEL, *piktid.DETAIL.values(), *piktid.RECOLOR.values()]


def register_endpoints(env: Mapping[str, str] = os.environ) -> bool:
    """Add the vendor routes to ComfyUI's server when enabled; a configuration error is
    logged and serves nothing (fail closed). True when routes were added."""
    try:
        config = load(env)
    except ConfigError as error:
        logger.error("region-repair: the vendor endpoints stay off: %s", error)
        return False
    if not config.enabled:
        return False
    from server import PromptServer
    if getattr(PromptServer, "instance", None) is None:   # imported outside a running server
        logger.warning("region-repair: no ComfyUI server is running; the vendor endpoints are "
                       "not added")
        return False
    from . import octoai, photio, picpik, piktid_routes, prompts
    from .comfy import Runner
    from .service import Service
    absent = prompts.missing(workflows())
    if absent:
        logger.error("region-repair: the vendor endpoints stay off: the API workflows %s are "
                     "missing from %s", absent, prompts.API_WORKFLOWS)
        return False
    service = Service(config, Runner(PromptServer.instance))
    for vendor in (piktid_routes, picpik, photio, octoai):
        vendor.add_routes(PromptServer.instance.routes, service)
    served = [name for name, ring in service.keys.items() if ring.size]
    logger.info("region-repair: vendor endpoints on under /region-repair/ (keys for: %s)",
                ", ".join(served) or "none")
    return True
