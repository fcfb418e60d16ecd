"""One ComfyUI server as the fleet sees it: started as a child of the worker (the same starter
as the demo and the tests, scripts/comfy_server.py) or given by URL, and driven over HTTP with
one prompt in flight.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import websocket

from fleet.manifest import PACK_ROOT, SET_FOLDER_PREFIX

HTTP_TIMEOUT = 60.0
CHECK_SECONDS = 1.0


def comfy_server_module() -> Any:
    """scripts/comfy_server.py, loaded from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("region_repair_comfy_server",
                                                  PACK_ROOT / "scripts" / "comfy_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ServerGone(ConnectionError):
    """The server stopped answering (killed, restarting or unreachable)."""


class PromptFailed(RuntimeError):
    """ComfyUI refused the prompt (validation) or its execution raised: retrying cannot help."""


class PromptTimedOut(TimeoutError):
    """The prompt ran past the job timeout; it has been interrupted."""


class ComfyClient:
    def __init__(self, url: str, alive: Callable[[], bool] | None = None):
        self.url = url.rstrip("/")
        self.alive = alive or (lambda: True)  # an owned server's process check
        self.session = requests.Session()
        self.client_id = f"fleet-{uuid.uuid4().hex}"
        self._socket: websocket.WebSocket | None = None

    def socket(self) -> websocket.WebSocket:
        """The websocket on which the server reports this client's prompts (opened before the
        first post, so that no message is missed)."""
        if self._socket is None or not self._socket.connected:
            address = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
            try:
                self._socket = websocket.create_connection(address, timeout=HTTP_TIMEOUT)
            except (websocket.WebSocketException, OSError) as error:
                raise ServerGone(f"{self.url}: websocket: {error}") from None
        return self._socket

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if not self.alive():
            raise ServerGone(f"{self.url}: the server process has exited")
        try:
            return self.session.request(method, self.url + path, timeout=HTTP_TIMEOUT, **kwargs)
        except requests.ConnectionError as error:
            raise ServerGone(f"{self.url}: {error}") from None

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, **kwargs: Any) -> None:
        self.call(method, path, **kwargs).raise_for_status()

    def upload(self, name: str, path: str) -> None:
        """Upload a file as `name`, a path under the server's input folder."""
        subfolder, _, filename = name.rpartition("/")
        with open(path, "rb") as handle:
            self.json("POST", "/upload/image", files={"image": (filename, handle)},
                      data={"subfolder": subfolder, "type": "input", "overwrite": "true"})

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        return self.json("GET", f"/history/{prompt_id}").get(prompt_id)

    def queued(self, prompt_id: str) -> bool:
        queue = self.json("GET", "/queue")
        return any(item[1] == prompt_id
                   for item in queue["queue_running"] + queue["queue_pending"])

    def forget(self, prompt_id: str) -> None:
        """Drop a finished attempt from /history, so that a re-post is not mistaken for it."""
        self.send("POST", "/history", json={"delete": [prompt_id]})

    def post(self, prompt: dict[str, Any], prompt_id: str) -> None:
        self.socket()  # connected before the prompt can end
        response = self.call("POST", "/prompt", json={"prompt": prompt, "prompt_id": prompt_id,
                                                      "client_id": self.client_id})
        if response.status_code == 400:
            raise PromptFailed(f"ComfyUI refused the prompt: {response.text[:2000]}")
        response.raise_for_status()

    def interrupt(self, prompt_id: str) -> None:
        self.send("POST", "/interrupt", json={"prompt_id": prompt_id})
        self.send("POST", "/queue", json={"delete": [prompt_id]})

    def finished(self, prompt_id: str, timeout: float) -> dict[str, Any] | None:
        """The /history entry once the prompt ends; None when it is no longer queued without
        one (dropped), PromptTimedOut when it runs past `timeout`. The websocket says when the
        prompt ends (polling /history would take the server's time from the prompt); /history
        and /queue are still read every CHECK_SECONDS, for a prompt another client posted."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            if not self.queued(prompt_id):
                entry = self.history(prompt_id)  # it may have finished between the two calls
                return entry if entry and entry["status"].get("completed") is not None else None
            if time.monotonic() > deadline:
                raise PromptTimedOut(f"prompt ran past {timeout:.0f} s")
            self.await_end(prompt_id, min(CHECK_SECONDS, max(deadline - time.monotonic(), 0)))

    def await_end(self, prompt_id: str, seconds: float) -> None:
        """Return when the server says the prompt ended (its history is written by then), or
        after `seconds`."""
        until = time.monotonic() + seconds
        try:
            while (left := until - time.monotonic()) > 0:
                socket = self.socket()
                socket.settimeout(left)
                message = socket.recv()
                if isinstance(message, str):
                    event = json.loads(message)
                    if (event.get("type") == "executing" and event["data"].get("node") is None
                            and event["data"].get("prompt_id") == prompt_id):
                        return
        except websocket.WebSocketTimeoutException:
            return
        except (websocket.WebSocketException, OSError) as error:
            raise ServerGone(f"{self.url}: websocket: {error}") from None

    def run(self, prompt: dict[str, Any], prompt_id: str, uploads: dict[str, str],
            timeout: float) -> dict[str, Any]:
        """Run a prompt once, idempotently, and return its /history outputs (node id -> ui): a
        success already in /history is reused, an attempt still queued is waited for, a failed
        one is forgotten and posted again."""
        entry = self.history(prompt_id)
        if not (entry and entry.get("status", {}).get("status_str") == "success"):
            if not self.queued(prompt_id):
                if entry:
                    self.forget(prompt_id)
                for name, path in uploads.items():
                    self.upload(name, path)
                self.post(prompt, prompt_id)
            try:
                entry = self.finished(prompt_id, timeout)
            except PromptTimedOut:
                self.interrupt(prompt_id)
                self.finished(prompt_id, HTTP_TIMEOUT)  # let the interrupted prompt settle
                raise
            if entry is None:
                raise ServerGone(f"{self.url}: prompt {prompt_id} left the queue unfinished")
        status = entry["status"]
        if status.get("status_str") != "success":
            raise PromptFailed(execution_error(status.get("messages", [])))
        return entry.get("outputs", {})

    def fetch(self, file_info: dict[str, str]) -> bytes:
        response = self.call("GET", "/view", params={key: file_info[key] for key in
                                                     ("filename", "subfolder", "type")})
        response.raise_for_status()
        return response.content


def execution_error(messages: list[Any]) -> str:
    for kind, data in messages:
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}) raised "
                    f"{data.get('exception_type')}: {data.get('exception_message', '').strip()}")
        if kind == "execution_interrupted":
            return f"interrupted at node {data.get('node_id')}"
    return f"execution failed: {messages}"


class OwnedServer:
    """A ComfyUI server started as a plain child of this process: when Ray kills the worker
    (process-group clean-up), the server goes with it."""

    def __init__(self, base_dir: Path, gpus: tuple[str, ...], threads: int):
        self.base_dir = base_dir
        self.gpus = gpus  # the GPU ids Ray gave the worker; none: a CPU server
        self.threads = threads  # the worker's CPU share: servers sharing cores must not fight
        self.server: Any = None

    def start(self) -> ComfyClient:
        module = comfy_server_module()
        # An empty PYTHONPATH is ignored: the pack root must not reach ComfyUI's sys.path.
        # OpenCV's own thread pool ignores OMP_NUM_THREADS (torch, OpenBLAS) and takes every
        # core: two servers on two cores each ran OpenCV on two threads and fought over them.
        threads = str(self.threads)
        env = {"PYTHONPATH": "", "OMP_NUM_THREADS": threads, "OPENCV_FOR_THREADS_NUM": threads}
        if self.gpus:  # Ray sets it in the worker too; said here, the server cannot miss it
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        self.server = module.ComfyServer(self.base_dir, cpu=not self.gpus, env=env).start()
        return ComfyClient(self.server.url, alive=lambda: self.server.process.poll() is None)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def remove(self, outputs: list[dict[str, str]], uploads: list[str]) -> None:
        """Delete what the server wrote (as /history names it) and received (paths under its
        input folder) once the job is written out, and a set's folder: a long run would
        otherwise keep a second copy of every image."""
        for info in outputs:
            (self.base_dir / info["type"] / info["subfolder"] / info["filename"]).unlink(
                missing_ok=True)
        inputs = self.base_dir / "input"
        for name in uploads:
            (inputs / name).unlink(missing_ok=True)
        for folder in {(inputs / name).parent for name in uploads}:
            if folder.name.startswith(SET_FOLDER_PREFIX) and not any(folder.iterdir()):
                folder.rmdir()
