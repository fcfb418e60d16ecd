"""Start a real, headless ComfyUI server with this pack linked in, and talk to it over HTTP.

Shared by `make demo` and the server-tier tests. Standard library only. The server runs
`main.py --cpu` on 127.0.0.1 with a free port and a throw-away `--base-directory`, so the
ComfyUI tree stays clean; it is stopped by its own PID.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

PACK_ROOT = Path(__file__).resolve().parents[1]
COMFYUI = PACK_ROOT / ".venv" / "ComfyUI"
PACK_LINK_NAME = "comfyui-region-repair"


def pack_module(name: str) -> Any:
    """A module of `pipelines/` without relative imports (`core/samples`), loaded from its
    file: the pack root is never put on sys.path, where its `nodes/` would shadow ComfyUI's own
    `nodes` module."""
    spec = importlib.util.spec_from_file_location(f"region_repair_{name.replace('/', '_')}",
                                                  PACK_ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PromptError(RuntimeError):
    """The server rejected or failed a prompt; `details` holds its JSON answer."""

    def __init__(self, message: str, details: Any):
        super().__init__(f"{message}: {json.dumps(details)[:2000]}")
        self.details = details


def pack_node_ids() -> list[str]:
    """The node ids the pack declares, read from its sources (no ComfyUI import needed)."""
    ids = []
    for path in sorted((PACK_ROOT / "nodes").glob("*.py")):
        ids += re.findall(r'node_id="(RegionRepair_\w+)"', path.read_text())
    return ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """One ComfyUI process. `extra_packs` maps folder names to paths linked into custom_nodes."""

    def __init__(self, base_dir: Path, extra_packs: dict[str, Path] | None = None,
                 python: str = sys.executable, startup_timeout: float = 180.0,
                 env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 cpu: bool = True):
        self.base_dir = Path(base_dir)
        self.packs = {PACK_LINK_NAME: PACK_ROOT, **(extra_packs or {})}
        self.python = python
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.log_path = self.base_dir / "comfyui.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.extra_args = tuple(extra_args)  # more main.py flags, e.g. ("--verbose", "DEBUG")
        self.cpu = cpu  # False lets ComfyUI use the GPU it sees (the fleet's GPU workers)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.python, str(COMFYUI / "main.py"), *(["--cpu"] if self.cpu else []),
                "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
                "--base-directory", str(self.base_dir), "--database-url", "sqlite:///:memory:",
                *self.extra_args]

    def start(self) -> ComfyServer:
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        for name, path in self.packs.items():
            link = custom_nodes / name
            if not link.exists():
                link.symlink_to(path, target_is_directory=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=COMFYUI, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _fail(self, reason: str) -> None:
        raise RuntimeError(f"ComfyUI server: {reason}\n--- log tail ---\n{self.log()[-6000:]}")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                self._fail(f"exited with code {self.process.returncode} during start-up")
            try:
                self.get_json("/queue")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        else:
            self._fail(f"not ready after {self.startup_timeout:.0f} s")
        failed = [line for line in self.log().splitlines()
                  if ("IMPORT FAILED" in line or "Cannot import" in line)
                  and any(name in line for name in self.packs)]
        if failed:
            self._fail("a pack failed to import: " + " | ".join(failed))
        available = self.get_json("/object_info")
        missing = [node_id for node_id in pack_node_ids() if node_id not in available]
        if missing:
            self._fail(f"the pack's nodes are missing from /object_info: {missing}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- HTTP -----------------------------------------------------------------------------
    def request(self, path: str, data: Any = None, method: str | None = None) -> bytes:
        body = None if data is None else json.dumps(data).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.read()

    def get_json(self, path: str) -> Any:
        return json.loads(self.request(path))

    def post_prompt(self, prompt: dict[str, Any], client_id: str | None = None) -> str:
        """Queue an API-format prompt; a validation failure raises PromptError (HTTP 400)."""
        payload = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        try:
            return json.loads(self.request("/prompt", payload))["prompt_id"]
        except urllib.error.HTTPError as error:
            raise PromptError(f"POST /prompt answered {error.code}",
                              json.loads(error.read() or b"null")) from None

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Wait for a prompt to finish; returns its /history entry or raises PromptError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                self._fail(f"exited with code {self.process.returncode} while running a prompt")
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") != "success":
                    raise PromptError("prompt failed", entry["status"].get("messages"))
                return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
        return self.wait(self.post_prompt(prompt), timeout)

    def view(self, file_info: dict[str, str]) -> bytes:
        """Fetch an output file named by a /history `images` entry."""
        query = urllib.parse.urlencode({key: file_info[key]
                                        for key in ("filename", "subfolder", "type")})
        return self.request(f"/view?{query}")

    def output_files(self, history: dict[str, Any], node_id: str) -> list[bytes]:
        return [self.view(info) for info in history["outputs"][node_id]["images"]]
