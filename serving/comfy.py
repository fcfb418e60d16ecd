"""The only module that talks to ComfyUI: served requests become prompts on its own queue
(`PromptServer.instance.prompt_queue`), exactly as `POST /prompt` queues them, so they share the
device, the progress bar and interrupt with the editor. A job's state is read from the queue and
/history; nothing runs inside a request handler."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import execution
import folder_paths

from ..pipelines.detection.detect import yolo_weights
from .inputs import ImageUpload, RequestError, without_text_chunks
from .prompts import Prompt

INPUT_SUBFOLDER = "region-repair-serving"
POLL_S = 0.05


class PromptRejected(RuntimeError):
    """ComfyUI's validation refused a built prompt: a server-side problem (a configured model
    file that is missing, say), not the caller's."""


class Runner:
    def __init__(self, server: Any):
        self.server = server

    # --- inputs ------------------------------------------------------------------------------
    async def save_inputs(self, uploads: list[ImageUpload]) -> tuple[list[str], list[Path]]:
        """Each upload written under input/region-repair-serving/ with a random name; returns
        the names LoadImage takes and the paths to delete when the job ends."""
        folder = Path(folder_paths.get_input_directory()) / INPUT_SUBFOLDER
        names = [f"{INPUT_SUBFOLDER}/{uuid.uuid4().hex}.{upload.extension}"
                 for upload in uploads]
        paths = [folder / name.split("/", 1)[1] for name in names]

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            for path, upload in zip(paths, uploads):
                path.write_bytes(upload.data)
        await asyncio.get_running_loop().run_in_executor(None, write)
        return names, paths

    async def save_set(self, uploads: list[ImageUpload]) -> tuple[str, Path]:
        """A set of images of any sizes for the pack's Load Image Set: written into a new
        random subfolder of input/region-repair-serving/ as `<index>.<ext>`, which that node
        reads in number order. Returns the folder as the node takes it, and the folder to
        delete when the job ends."""
        name = f"{INPUT_SUBFOLDER}/set_{uuid.uuid4().hex}"
        folder = Path(folder_paths.get_input_directory()) / name

        def write() -> None:
            folder.mkdir(parents=True)
            for index, upload in enumerate(uploads):
                (folder / f"{index}.{upload.extension}").write_bytes(upload.data)
        await asyncio.get_running_loop().run_in_executor(None, write)
        return name, folder

    @staticmethod
    def state_directory() -> Path:
        """Where served state that outlives the server is kept: user/region-repair-serving/."""
        return Path(folder_paths.get_user_directory()) / INPUT_SUBFOLDER

    @staticmethod
    def has_yolo_weights(detector: str) -> bool:
        """Whether a YOLO detector can run here: the optional package is installed and the
        Detect node would find the detector's weights in the ultralytics model folder."""
        if importlib.util.find_spec("ultralytics") is None:
            return False
        try:
            files = {name: folder_paths.get_full_path("ultralytics", name)
                     for name in folder_paths.get_filename_list("ultralytics")}
            yolo_weights(detector, None, files, [])
        except (KeyError, ValueError):  # the folder unregistered, or no such file in it
            return False
        return True

    @staticmethod
    def delete(paths: list[Path]) -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # --- the queue ---------------------------------------------------------------------------
    async def queue(self, prompt: Prompt) -> str:
        """Validate and queue `prompt` the way `POST /prompt` does; returns its prompt id."""
        prompt = self.server.trigger_on_prompt({"prompt": prompt})["prompt"]
        prompt_id = str(uuid.uuid4())
        valid = await execution.validate_prompt(prompt_id, prompt, None)
        if not valid[0]:
            raise PromptRejected(f"{valid[1]} {valid[3]}")
        number = self.server.number
        self.server.number += 1
        extra_data = {"create_time": int(time.time() * 1000)}
        self.server.prompt_queue.put((number, prompt_id, prompt, extra_data, valid[2], {}))
        return prompt_id

    def state(self, prompt_id: str) -> tuple[str, dict[str, Any] | None]:
        """pending, processing, completed or failed, with the /history entry once finished."""
        entry = self.server.prompt_queue.get_history(prompt_id=prompt_id).get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            ok = entry["status"].get("status_str") == "success"
            return ("completed" if ok else "failed"), entry
        running, _ = self.server.prompt_queue.get_current_queue_volatile()
        if any(item[1] == prompt_id for item in running):
            return "processing", None
        return "pending", None

    def position(self, prompt_id: str) -> int:
        """How many prompts run or wait before this one (for Retry-After)."""
        running, queued = self.server.prompt_queue.get_current_queue_volatile()
        ahead = sorted(queued, key=lambda item: item[0])
        for index, item in enumerate(ahead):
            if item[1] == prompt_id:
                return len(running) + index
        return len(running) + len(ahead)

    def pending_count(self) -> int:
        running, queued = self.server.prompt_queue.get_current_queue_volatile()
        return len(running) + len(queued)

    async def wait(self, prompt_id: str, timeout: float) -> dict[str, Any]:
        """The finished prompt's /history entry; a RequestError(504) after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.state(prompt_id)[1]
            if entry is not None:
                return entry
            await asyncio.sleep(POLL_S)
        raise RequestError(504, f"the job did not finish within {timeout:.0f} s; it stays "
                           "queued on the server")

    # --- outputs -----------------------------------------------------------------------------
    @staticmethod
    def error_message(job: Any) -> str:
        """Why a finished job has no result, in ComfyUI's words."""
        if job.error is not None:
            return str(job.error)
        for kind, data in job.entry.get("status", {}).get("messages", []):
            if kind == "execution_error":
                return f"{data.get('node_type')}: {data.get('exception_message', '').strip()}"
            if kind == "execution_interrupted":
                return "interrupted on the server"
        return "the job failed"

    @staticmethod
    def texts(entry: dict[str, Any], node_id: str) -> list[str]:
        return list(entry.get("outputs", {}).get(node_id, {}).get("text", []))

    @staticmethod
    def image_paths(entry: dict[str, Any], node_id: str) -> list[Path]:
        """The files an output node saved, in order (names ComfyUI chose, never a caller)."""
        paths = []
        for info in entry.get("outputs", {}).get(node_id, {}).get("images", []):
            folder = folder_paths.get_directory_by_type(info.get("type", ""))
            if folder is None:
                raise RuntimeError(f"unknown output type {info.get('type')!r}")
            paths.append(Path(folder) / info.get("subfolder", "") / info["filename"])
        return paths

    async def images(self, entry: dict[str, Any], node_id: str) -> list[bytes]:
        """The images an output node saved, in order, without ComfyUI's PNG metadata."""
        paths = self.image_paths(entry, node_id)
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: [without_text_chunks(path.read_bytes()) for path in paths])
