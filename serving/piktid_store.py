"""PiktID's served state on disk, so that a restarted ComfyUI still answers for it: projects,
uploaded files (records and bytes, until they expire), webhooks, and each job's record (status,
error, its outputs' latest versions with Quality Check's verdicts) with its result images.

The folder is `region-repair-serving/` under ComfyUI's user directory (serving/comfy.py names
it). Keys are never written: a record holds the key's id (`piktid:<index>`, its place among the
configured keys), so a restart with the same keys in the same order finds its jobs. Every file
name is the server's own (random ids, digits); none comes from a request. Pure file work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .inputs import ImageUpload

SERVER_RESTARTED = "the server restarted before the job finished; start it again"
RESULT_NAME = re.compile(r"\d+_\d+_v\d+")   # <image_index>_<group_index>_v<version>
_ID = re.compile(r"[A-Za-z0-9_]+")           # the server's own ids: job_..., img_...


@dataclass
class Saved:
    projects: dict[str, dict[str, str]] = field(default_factory=dict)  # key id -> name -> id
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # key id -> webhook
    files: dict[str, tuple[dict[str, Any], ImageUpload]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)          # oldest first


def result_name(image_index: int, group_index: int, version: int) -> str:
    return f"{image_index}_{group_index}_v{version}"


class PiktidStore:
    def __init__(self, folder: Path):
        self.folder = folder

    # --- writing -----------------------------------------------------------------------------
    def _write(self, path: Path, data: bytes) -> None:
        """Whole or not at all (a crash mid-write leaves the previous file)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)

    def _write_json(self, path: Path, value: Any) -> None:
        self._write(path, json.dumps(value, indent=1).encode())

    def save_projects(self, projects: dict[str, dict[str, str]]) -> None:
        self._write_json(self.folder / "projects.json", projects)

    def save_webhooks(self, webhooks: dict[str, dict[str, Any]]) -> None:
        """With each webhook's signing secret (the caller holds it to verify deliveries)."""
        self._write_json(self.folder / "webhooks.json", webhooks)

    def save_file(self, file_id: str, record: dict[str, Any], upload: ImageUpload) -> None:
        folder = self.folder / "files"
        self._write(folder / f"{_checked(file_id)}.{upload.extension}", upload.data)
        self._write_json(folder / f"{file_id}.json", {
            **record, "extension": upload.extension, "width": upload.width,
            "height": upload.height})

    def drop_file(self, file_id: str) -> None:
        for path in (self.folder / "files").glob(f"{_checked(file_id)}.*"):
            path.unlink(missing_ok=True)

    def save_job(self, record: dict[str, Any]) -> None:
        self._write_json(self.folder / "jobs" / f"{_checked(record['id'])}.json", record)

    def save_result(self, job_id: str, name: str, png: bytes) -> None:
        self._write(self._result_path(job_id, name), png)

    def drop_job(self, job_id: str) -> None:
        (self.folder / "jobs" / f"{_checked(job_id)}.json").unlink(missing_ok=True)
        shutil.rmtree(self.folder / "results" / job_id, ignore_errors=True)

    # --- reading -----------------------------------------------------------------------------
    def result(self, job_id: str, name: str) -> bytes | None:
        if not _ID.fullmatch(job_id) or not RESULT_NAME.fullmatch(name):
            return None
        path = self._result_path(job_id, name)
        return path.read_bytes() if path.is_file() else None

    def load(self, now: float) -> Saved:
        """Everything saved; expired files are deleted, and a job that was still pending or
        processing is failed (the server stopped under it) and saved so."""
        saved = Saved(_read_json(self.folder / "projects.json", {}),
                      _read_json(self.folder / "webhooks.json", {}))
        for path in sorted((self.folder / "files").glob("*.json")):
            record = _read_json(path, None)
            data = path.with_suffix(f".{record.get('extension')}") if record else None
            if record is None or record.get("expires", 0) < now or not data.is_file():
                self.drop_file(path.stem)
                continue
            upload = ImageUpload(data.read_bytes(), record.pop("extension"),
                                 record.pop("width"), record.pop("height"))
            saved.files[path.stem] = (record, upload)
        for path in (self.folder / "jobs").glob("*.json"):
            record = _read_json(path, None)
            if not isinstance(record, dict) or "status" not in record:
                continue
            if record["status"] in ("pending", "processing"):
                record.update(status="failed", error_message=SERVER_RESTARTED)
                self.save_job(record)
            saved.jobs.append(record)
        saved.jobs.sort(key=lambda record: record.get("created", 0))
        return saved

    def _result_path(self, job_id: str, name: str) -> Path:
        return self.folder / "results" / _checked(job_id) / f"{name}.png"


def _checked(server_id: str) -> str:
    if not _ID.fullmatch(server_id):
        raise ValueError(f"not one of this server's ids: {server_id!r}")
    return server_id


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default

