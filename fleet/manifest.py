"""Read a manifest (JSON Lines) into jobs: each line's workflow, inputs and params applied to an
API-format prompt, with a deterministic prompt id.

A line that cannot be read as a job (not JSON, wrong types, unknown keys, a bad or duplicate
id) stops the run before anything starts (`ManifestError`, every such line listed). A line
that reads but cannot run (unknown workflow, missing input file, a param naming no node or
input) becomes a job carrying its `error`: reported before the run and written as a failed row,
while the other jobs run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

PACK_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_WORKFLOWS = PACK_ROOT / "workflows_api"
ALLOWED_KEYS = {"id", "workflow", "inputs", "params"}
ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
UPLOAD_SUBFOLDER = "fleet"
# Loaders of a whole folder: a manifest gives them a list of files, uploaded to a folder of the
# set's own, named in the list's order. The pack's Load Image Set reads them in that order;
# ComfyUI's Load Image Dataset from Folder in the directory's (docs/fleet.md).
SET_LOADERS = {"RegionRepair_LoadImageSet", "LoadImageDataSetFromFolder"}
SET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what both set loaders read
SET_FOLDER_PREFIX = "set-"
# Nodes the fleet adds to read Quality Check's report from /history (its output is a STRING).
QUALITY_CLASS = "RegionRepair_QualityCheck"
QUALITY_READER_PREFIX = "fleet_quality_"


class ManifestError(ValueError):
    """Lines that cannot be read as jobs, each as 'line N: reason'."""

    def __init__(self, path: Path, problems: list[str]):
        super().__init__(f"{path}: {len(problems)} bad line(s):\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass
class Job:
    """One manifest line. `uploads` maps the paths the prompt loads, relative to the server's
    input folder (`fleet/<digest>.png`, `fleet/set-<digest>/0.png`), to local files; `error`
    is set when the line cannot run."""

    id: str
    line: int
    prompt: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    prompt_id: str = ""
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


def pack_version() -> str:
    return tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]["version"]


def shipped_workflow_names() -> list[str]:
    return sorted(path.stem for path in SHIPPED_WORKFLOWS.glob("*.json"))


def local_path(reference: str, base: Path) -> Path:
    """A path or file URL, relative paths taken from the manifest's folder."""
    if reference.startswith("file:"):
        parsed = urllib.parse.urlparse(reference)
        return Path(urllib.request.url2pathname(parsed.path))
    path = Path(reference).expanduser()
    return path if path.is_absolute() else base / path


def workflow_path(name: str, base: Path) -> Path:
    shipped = SHIPPED_WORKFLOWS / f"{name.removesuffix('.json')}.json"
    if "/" not in name and shipped.exists():
        return shipped
    path = local_path(name, base)
    if not path.exists():
        raise ValueError(f"workflow {name!r} is neither a shipped workflow "
                         f"(workflows_api/) nor an existing file ({path})")
    return path


def load_workflow(path: Path) -> dict[str, Any]:
    try:
        prompt = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"workflow {path} is not readable JSON: {error}") from None
    if not (isinstance(prompt, dict) and prompt
            and all(isinstance(node, dict) and "class_type" in node for node in prompt.values())):
        raise ValueError(f"workflow {path} is not an API-format prompt "
                         "({node id: {class_type, inputs}}); export it with 'Save (API)'")
    return prompt


def find_node(prompt: dict[str, Any], reference: str) -> str:
    """A node id from an id or a title; a title used by several nodes is refused."""
    if reference in prompt:
        return reference
    matches = [node_id for node_id, node in prompt.items()
               if node.get("_meta", {}).get("title") == reference]
    if len(matches) == 1:
        return matches[0]
    titles = sorted(node.get("_meta", {}).get("title", node_id) for node_id, node in prompt.items())
    if matches:
        raise ValueError(f"title {reference!r} names several nodes {matches}: use a node id")
    raise ValueError(f"no node with id or title {reference!r}; nodes: {titles}")


def input_file(reference: str, source: str, base: Path) -> tuple[Path, str]:
    """An input's local file and the content digest that names its upload."""
    path = local_path(source, base)
    if not path.is_file():
        raise ValueError(f"input {reference!r}: file not found: {path}")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def set_uploads(reference: str, sources: list[str], base: Path) -> tuple[str, dict[str, str]]:
    """A set's folder (under input/fleet/, named by every file's content and their order) and
    its uploads, named 0, 1, ... in the manifest's order (zero-padded to one width)."""
    if not sources:
        raise ValueError(f"input {reference!r}: the set is empty")
    files = [input_file(reference, source, base) for source in sources]
    unreadable = [str(path) for path, _ in files if path.suffix.lower() not in SET_SUFFIXES]
    if unreadable:
        raise ValueError(f"input {reference!r}: a set's files must be "
                         f"{', '.join(SET_SUFFIXES)} (the set loader skips others): {unreadable}")
    width = len(str(len(files) - 1))
    names = [f"{index:0{width}d}{path.suffix.lower()}" for index, (path, _) in enumerate(files)]
    digest = hashlib.sha256(" ".join(f"{name}:{digest}" for name, (_, digest)
                                     in zip(names, files)).encode()).hexdigest()[:32]
    folder = f"{UPLOAD_SUBFOLDER}/{SET_FOLDER_PREFIX}{digest}"
    return folder, {f"{folder}/{name}": str(path) for name, (path, _) in zip(names, files)}


def apply_inputs(prompt: dict[str, Any], inputs: dict[str, str | list[str]],
                 base: Path) -> dict[str, str]:
    """Point each addressed loader at its uploads, named by content: an image-loading node at
    one file, a set loader at a folder of the listed files. Returns the uploads."""
    uploads = {}
    for reference, source in inputs.items():
        node_id = find_node(prompt, reference)
        node = prompt[node_id]
        node_inputs = node.get("inputs", {})
        if isinstance(source, list):
            if node["class_type"] not in SET_LOADERS:
                raise ValueError(f"input {reference!r}: a list of files needs a set loader "
                                 f"({', '.join(sorted(SET_LOADERS))}); node {node_id} is "
                                 f"{node['class_type']}")
            node_inputs["folder"], files = set_uploads(reference, source, base)
            uploads.update(files)
            continue
        if node["class_type"] in SET_LOADERS:
            raise ValueError(f"input {reference!r}: node {node_id} ({node['class_type']}) "
                             "loads a set: give a list of files")
        if not isinstance(node_inputs.get("image"), str):
            raise ValueError(f"input {reference!r}: node {node_id} "
                             f"({node['class_type']}) loads no image file")
        path, digest = input_file(reference, source, base)
        name = f"{UPLOAD_SUBFOLDER}/{digest}{path.suffix.lower()}"
        uploads[name] = str(path)
        node_inputs["image"] = name
    return uploads


def apply_params(prompt: dict[str, Any], params: dict[str, dict[str, Any]]) -> None:
    for reference, values in params.items():
        node_id = find_node(prompt, reference)
        node_inputs = prompt[node_id].setdefault("inputs", {})
        for name, value in values.items():
            if name not in node_inputs:
                raise ValueError(f"params {reference!r}: node {node_id} has no input {name!r}; "
                                 f"inputs: {sorted(node_inputs)}")
            if isinstance(node_inputs[name], list):
                raise ValueError(f"params {reference!r}: input {name!r} is wired to another "
                                 "node, not a value")
            node_inputs[name] = value


def prompt_id_for(prompt: dict[str, Any], job_id: str, version: str) -> str:
    """The same workflow, inputs (named by content), job id and pack version give the same id.
    The job id keeps two jobs that ask for the same thing apart: each gets its own files (the
    second mostly from ComfyUI's cache) instead of finding the other's in /history."""
    canonical = json.dumps({"prompt": prompt, "id": job_id, "pack": version}, sort_keys=True)
    return str(uuid.UUID(hashlib.sha256(canonical.encode()).hexdigest()[:32]))


def add_fleet_nodes(prompt: dict[str, Any], prompt_id: str) -> None:
    """Name saved files after the prompt, and expose each Quality Check report in /history."""
    for node_id, node in list(prompt.items()):
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = f"fleet/{prompt_id}_{node_id}"
        if node["class_type"] == QUALITY_CLASS:
            prompt[QUALITY_READER_PREFIX + node_id] = {
                "class_type": "PreviewAny", "inputs": {"source": [node_id, 0]}}


def line_problem(record: Any) -> str:
    if not isinstance(record, dict):
        return "not a JSON object"
    unknown = sorted(set(record) - ALLOWED_KEYS)
    if unknown:
        return f"unknown keys {unknown}; allowed: {sorted(ALLOWED_KEYS)}"
    if not isinstance(record.get("workflow"), str) or not record["workflow"]:
        return "'workflow' is required: a shipped workflow's name or a path to an API-format JSON"
    if "id" in record and not (isinstance(record["id"], str)
                               and ID_PATTERN.fullmatch(record["id"])):
        return ("'id' must be 1-128 characters of letters, digits, '.', '_' or '-', not "
                "starting with '.'")
    inputs = record.get("inputs", {})
    if not (isinstance(inputs, dict) and all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(f, str) for f in v))
            for v in inputs.values())):
        return ("'inputs' must map node titles or ids to a file path or file URL, or to a list "
                "of them for a set loader")
    params = record.get("params", {})
    if not (isinstance(params, dict) and all(isinstance(v, dict) for v in params.values())):
        return "'params' must map node titles or ids to {input name: value}"
    return ""


def build_job(record: dict[str, Any], line: int, base: Path, version: str,
              workflows: dict[Path, dict[str, Any]]) -> Job:
    job = Job(id=record.get("id", ""), line=line)
    try:
        path = workflow_path(record["workflow"], base)
        if path not in workflows:
            workflows[path] = load_workflow(path)
        prompt = copy.deepcopy(workflows[path])
        job.uploads = apply_inputs(prompt, record.get("inputs", {}), base)
        apply_params(prompt, record.get("params", {}))
        job.prompt_id = prompt_id_for(prompt, job.id, version)
        add_fleet_nodes(prompt, job.prompt_id)
        job.prompt = prompt
    except ValueError as error:
        job.error = f"line {line}: {error}"
        job.prompt_id = job.prompt_id or prompt_id_for(record, job.id, version)
    job.id = job.id or job.prompt_id
    return job


def read_manifest(path: Path) -> list[Job]:
    """Every job of the manifest; raises ManifestError listing each unreadable line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ManifestError(path, [f"cannot read the manifest: {error}"]) from None
    version, workflows, jobs, problems, lines_by_id = pack_version(), {}, [], [], {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: not JSON ({error.msg} at column {error.colno})")
            continue
        problem = line_problem(record)
        if problem:
            problems.append(f"line {number}: {problem}")
            continue
        job = build_job(record, number, path.parent, version, workflows)
        if job.id in lines_by_id:
            problems.append(f"line {number}: id {job.id!r} already used on line "
                            f"{lines_by_id[job.id]}")
            continue
        lines_by_id[job.id] = number
        jobs.append(job)
    if problems:
        raise ManifestError(path, problems)
    if not jobs:
        raise ManifestError(path, ["no jobs: the manifest is empty"])
    return jobs
