"""comfyui-region-repair: regenerate a masked region of an image and put it back so that nothing
else changes. ComfyUI loads this folder from custom_nodes/; at import the nodes are registered (V3
schema, through comfy_entrypoint), the workflows' sample photos are copied into the input
folder once (pipelines/core/samples.py), and, only when the owner turned them on, the
self-hosted vendor endpoints are added to ComfyUI's server (serving/, docs/self-hosting.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import folder_paths
from comfy_api.latest import ComfyExtension, io

from .nodes import NODES
from .pipelines.core.samples import SAMPLES_FOLDER, install_samples
from .serving import register_endpoints

PACK_ROOT = Path(__file__).resolve().parent


class RegionRepairExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


def provide_samples() -> None:
    """The templates open ready to run: their photos go to input/region-repair-samples/."""
    input_dir = Path(folder_paths.get_input_directory())
    try:
        copied = install_samples(PACK_ROOT / "assets" / "photos", PACK_ROOT / "workflows",
                                 input_dir)
    except OSError as error:  # a read-only input folder must not stop the nodes from loading
        logging.warning("region-repair: could not copy the sample photos to %s: %s",
                        input_dir / SAMPLES_FOLDER, error)
        return
    if copied:
        logging.info("region-repair: %d sample photo(s) copied to %s", len(copied),
                     input_dir / SAMPLES_FOLDER)


# The self-hosted vendor endpoints (docs/self-hosting.md): off unless the owner turns them on.
register_endpoints()


async def comfy_entrypoint() -> RegionRepairExtension:
    provide_samples()
    return RegionRepairExtension()
