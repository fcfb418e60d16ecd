"""Input nodes: a set of shots from a folder, in a stable order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import folder_paths
from comfy_api.latest import io

from ..pipelines.core import image_set


def _set_folder(folder: str) -> Path:
    """`folder` inside ComfyUI's input directory (the combo lists only those; a prompt posted
    by a script is held to the same)."""
    root = Path(folder_paths.get_input_directory()).resolve()
    path = (root / folder).resolve()
    if not path.is_relative_to(root) or not path.is_dir():
        raise ValueError(f"folder: {folder!r} is not a folder of ComfyUI's input directory")
    return path


class LoadImageSet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RegionRepair_LoadImageSet",
            display_name="Load Image Set",
            category="region_repair/input",
            description=(
                "Loads every .png, .jpg, .jpeg and .webp photo of one input sub-folder as a "
                "list (any sizes), in natural name order (shot2 before shot10), each turned "
                "upright by its EXIF orientation. Unlike Load Image Dataset from Folder, whose "
                "order is the file system's, the order is the names': the first shot is the "
                "Garment Recolor anchor, and the outputs follow the names."),
            inputs=[
                io.Combo.Input("folder", options=folder_paths.get_input_subfolders(),
                               tooltip="A sub-folder of ComfyUI's input folder; its own "
                               "sub-folders are not read."),
            ],
            outputs=[
                io.Image.Output("images", display_name="images", is_output_list=True,
                                tooltip="One IMAGE [1, H, W, 3] per photo, in name order."),
                io.String.Output("names", display_name="names", is_output_list=True,
                                 tooltip="The file names, in the same order."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, folder: str) -> str:  # type: ignore[override]
        """Runs again when a photo is added, removed or changed (same folder name). From the
        names and bytes, as Load Image hashes its file: ComfyUI writes this value into the
        prompt saved in each PNG, so the same set gives the same file on any server."""
        try:
            files = image_set.set_files(_set_folder(folder))
        except (ValueError, OSError):
            return folder
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    @classmethod
    def execute(cls, folder: str) -> io.NodeOutput:  # type: ignore[override]
        files = image_set.set_files(_set_folder(folder))
        return io.NodeOutput([image_set.load_upright(path) for path in files],
                             [path.name for path in files])


NODES = [LoadImageSet]
