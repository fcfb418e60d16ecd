"""PiktID's routes in process: the real routes and prompts on an aiohttp test server, with
ComfyUI's queue replaced by a runner whose prompts finish when the test says so. Regenerate (one
output queued again with a new seed; the results show its latest finished version), and the
state a restarted server reads back from disk."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from pathlib import Path
from unittest import mock

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from region_repair.serving import piktid_routes
from region_repair.serving.config import Limits, ServeConfig, VendorConfig
from region_repair.serving.service import Service
from serving_images import png

KEY, OTHER_KEY = "piktid-regenerate-key-1", "piktid-regenerate-key-2"
HOOK = "http://127.0.0.1:9/piktid"   # nothing listens: deliveries fail, the webhook stays


class QueueByHand:
    """ComfyUI's side in memory: a queued prompt finishes on `finish`; each output image's
    bytes name the prompt and the position (`p0:1`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.prompts: dict[str, dict] = {}
        self.entries: dict[str, dict] = {}

    def state_directory(self) -> Path:
        return self.folder

    async def save_inputs(self, uploads):
        return [f"in/{n}.{u.extension}" for n, u in enumerate(uploads)], []

    async def save_set(self, uploads):
        return "set", Path("set")

    async def queue(self, prompt):
        prompt_id = f"p{len(self.prompts)}"
        self.prompts[prompt_id] = prompt
        return prompt_id

    def finish(self, prompt_id: str, ok: bool = True) -> None:
        prompt = self.prompts[prompt_id]
        outputs = {}
        for node_id, node in prompt.items():
            inputs = node["inputs"]
            if node["class_type"] == "RegionRepair_GuidedBlendInpaint":
                count = inputs["num_candidates"]
            elif node["class_type"] == "RegionRepair_GarmentRecolorAnchor":
                count = inputs["num_variations"] * 3   # the tests' sets have three images
        for node_id, node in prompt.items():
            if node["class_type"] == "PreviewImage":
                outputs[node_id] = {"images": [f"{prompt_id}:{k}" for k in range(count)]}
            elif node["class_type"] == "PreviewAny":
                outputs[node_id] = {"text": [json.dumps({"candidates": [
                    {"needs_review": True, "reasons": [prompt_id]}] * count})]}
        status = {"status_str": "success" if ok else "error", "completed": ok,
                  "messages": [] if ok else [["execution_error", {
                      "node_type": "X", "exception_message": "out of memory"}]]}
        self.entries[prompt_id] = {"status": status, "outputs": outputs}

    def state(self, prompt_id):
        entry = self.entries.get(prompt_id)
        return ("completed", entry) if entry else ("pending", None)

    def pending_count(self) -> int:
        return len(self.prompts) - len(self.entries)

    async def wait(self, prompt_id, timeout):
        while prompt_id not in self.entries:
            await asyncio.sleep(0.005)
        return self.entries[prompt_id]

    def delete(self, paths) -> None:
        pass

    @staticmethod
    def error_message(job) -> str:
        return job.entry["status"]["messages"][0][1]["exception_message"]

    @staticmethod
    def texts(entry, node_id):
        return entry["outputs"].get(node_id, {}).get("text", [])

    @staticmethod
    def image_paths(entry, node_id):
        return entry["outputs"][node_id]["images"]

    async def images(self, entry, node_id):
        return [name.encode() for name in entry["outputs"][node_id]["images"]]


def served(test, folder: Path) -> None:
    """Run `test(client, queue)` against the PiktID routes on a test server that keeps its
    state in `folder`."""
    async def main() -> None:
        queue = QueueByHand(folder)
        config = ServeConfig(True, Limits(max_jobs_per_key=1),   # a leaked job shows: 429
                             {"piktid": VendorConfig(keys=(KEY, OTHER_KEY),
                                                     webhook_urls=(HOOK,))})
        routes = web.RouteTableDef()
        piktid_routes.add_routes(routes, Service(config, queue))
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            await test(client, queue)
    asyncio.run(main())


def auth(key=KEY):
    return {"Authorization": "Bearer " + key}


API = piktid_routes.PATH


async def call(client, method, path, key=KEY, **kwargs):
    response = await client.request(method, API + path, headers=auth(key), **kwargs)
    return response.status, await response.json()


async def upload(client, seed: int) -> str:
    _, ticket = await call(client, "POST", "/upload", json={"filename": f"{seed}.png"})
    url = ticket["upload_url"][ticket["upload_url"].index(API):]
    put = await client.put(url, data=png(32, 24, seed), headers={"Content-Type": "image/png"})
    assert put.status == 200
    return ticket["file_id"]


async def settled(client, job_id: str, wanted: str) -> dict:
    for _ in range(400):
        _, status = await call(client, "GET", f"/jobs/{job_id}/status")
        if status["status"] == wanted:
            return status
        await asyncio.sleep(0.005)
    raise AssertionError(f"{job_id} stayed {status['status']}, not {wanted}")


async def results(client, job_id: str) -> dict:
    """(image_index, group_index) -> (version, the output's bytes)."""
    _, answer = await call(client, "GET", f"/jobs/{job_id}/results")
    found = {}
    for result in answer["results"]:
        link = result["output"]["full_size"]
        image = await (await client.get(link[link.index(API):])).read()
        found[result["image_index"], result["group_index"]] = (result["version"], image.decode())
    return found


def test_regenerate_one_detail_repair_candidate(tmp_path):
    async def test(client, queue):
        image = await upload(client, 1)
        status, job = await call(client, "POST", "/detail-repair", json={
            "image": image, "mask": {"bbox_norm": [0.2, 0.2, 0.5, 0.5]}, "num_candidates": 2})
        assert status == 202
        job_id = job["job_id"]
        status, refused = await call(client, "POST", f"/jobs/{job_id}/regenerate/0")
        assert status == 400 and refused["detail"][0]["field"] == "job_id"   # still running
        queue.finish("p0")
        await settled(client, job_id, "completed")
        for path, key in ((f"/jobs/{job_id}/regenerate/1", KEY),
                          (f"/jobs/{job_id}/regenerate/0?group_index=2", KEY),
                          (f"/jobs/{job_id}/regenerate/x", KEY),
                          ("/jobs/job_none/regenerate/0", KEY),
                          (f"/jobs/{job_id}/regenerate/0", OTHER_KEY)):
            assert (await call(client, "POST", path, key))[0] == 404, path

        status, answer = await call(client, "POST", f"/jobs/{job_id}/regenerate/0?group_index=1")
        assert status == 200 and answer["success"] and answer["image_index"] == 0
        again = queue.prompts["p1"]
        inpaint = next(n["inputs"] for n in again.values()
                       if n["class_type"] == "RegionRepair_GuidedBlendInpaint")
        first = next(n["inputs"] for n in queue.prompts["p0"].values()
                     if n["class_type"] == "RegionRepair_GuidedBlendInpaint")
        assert inpaint["num_candidates"] == 1 and inpaint["seed"] != first["seed"]
        running = await settled(client, job_id, "processing")
        assert running["processed_images"] == 1
        assert await results(client, job_id) == {(0, 0): (0, "p0:0"), (0, 1): (0, "p0:1")}

        queue.finish("p1")
        await settled(client, job_id, "completed")
        assert await results(client, job_id) == {(0, 0): (0, "p0:0"), (0, 1): (1, "p1:0")}
        _, answer = await call(client, "GET", f"/jobs/{job_id}/results")
        assert [r["reasons"] for r in answer["results"]] == [["p0"], ["p1"]]   # each its own

        # A failed regeneration is notified and leaves the version before it.
        await call(client, "POST", f"/jobs/{job_id}/regenerate/0?group_index=1")
        queue.finish("p2", ok=False)
        await settled(client, job_id, "completed")
        assert await results(client, job_id) == {(0, 0): (0, "p0:0"), (0, 1): (1, "p1:0")}
        _, notes = await call(client, "POST", "/notifications", json={"id_task": job_id})
        remade = [(n["data"]["status"], n["data"]["version"]) for n in notes
                  if "version" in n["data"]]
        assert remade[0] == ("pending", 1) and ("completed", 1) in remade
        assert remade[-1] == ("failed", 2)
        assert [n["data"]["error_message"] for n in notes
                if n["data"]["status"] == "failed"] == ["out of memory"]
        assert all(n["data"]["image_index"] == 0 and n["data"]["group_index"] == 1
                   for n in notes if "version" in n["data"])

        # The ZIP holds each output's latest version.
        _, link = await call(client, "POST", "/download", json={"job_id": job_id})
        archive = await (await client.get(link["download_url"][
            link["download_url"].index(API):])).read()
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            assert sorted(zipped.namelist()) == ["output_0_0_v0.png", "output_0_1_v1.png"]
            assert zipped.read("output_0_1_v1.png") == b"p1:0"
    served(test, tmp_path)


def test_regenerate_one_recolour_output_of_a_set(tmp_path):
    async def test(client, queue):
        images = [await upload(client, seed) for seed in range(3)]
        status, job = await call(client, "POST", "/garment-recolor", json={
            "images": images, "reference_text": "#2E5A3B", "num_variations": 2})
        assert status == 202 and job["total_outputs"] == 6
        job_id = job["job_id"]
        queue.finish("p0")
        await settled(client, job_id, "completed")
        # Variation-major in the request's order: output (i, g) is at position 3 g + i.
        first = await results(client, job_id)
        assert list(first) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
        assert first[0, 0] == (0, "p0:0") and first[2, 1] == (0, "p0:5")
        assert (await call(client, "POST", f"/jobs/{job_id}/regenerate/3"))[0] == 404
        assert (await call(client, "POST",
                           f"/jobs/{job_id}/regenerate/2?group_index=2"))[0] == 404
        status, _ = await call(client, "POST", f"/jobs/{job_id}/regenerate/2?group_index=1")
        assert status == 200
        recolor = next(n["inputs"] for n in queue.prompts["p1"].values()
                       if n["class_type"] == "RegionRepair_GarmentRecolorAnchor")
        assert recolor["num_variations"] == 2   # the set again, up to this output's shade
        queue.finish("p1")
        await settled(client, job_id, "completed")
        assert await results(client, job_id) == {**first, (2, 1): (1, "p1:5")}
        # Uploads are kept an hour; after that a regeneration is refused before it is queued.
        later = time.time() + 2 * 3600
        with mock.patch.object(time, "time", lambda: later):
            status, refused = await call(client, "POST", f"/jobs/{job_id}/regenerate/0")
        assert status == 400 and refused["detail"][0]["field"] == "images"
        assert (await call(client, "POST", f"/jobs/{job_id}/regenerate/0"))[0] == 200
    served(test, tmp_path)


def test_state_survives_a_restart(tmp_path):
    """A finished job's status, results (their latest versions) and images, the projects,
    uploads and webhooks are read back by a new server on the same folder; a job that was
    pending when the server stopped reports failed; no key is written there."""
    jobs = {}

    async def before(client, queue):
        _, project = await call(client, "POST", "/project", json={"project_name": "kept"})
        jobs["project"] = project["project_id"]
        assert (await call(client, "PUT", "/webhooks", json={"url": HOOK}))[0] == 200
        image = await upload(client, 1)
        _, job = await call(client, "POST", "/detail-repair", json={
            "image": image, "mask": {"bbox_norm": [0.2, 0.2, 0.5, 0.5]}, "num_candidates": 2})
        queue.finish("p0")
        await settled(client, job["job_id"], "completed")
        await call(client, "POST", f"/jobs/{job['job_id']}/regenerate/0?group_index=1")
        queue.finish("p1")
        await settled(client, job["job_id"], "completed")
        jobs["done"], jobs["results"] = job["job_id"], await results(client, job["job_id"])
        _, unfinished = await call(client, "POST", "/detail-repair", json={
            "image": image, "mask": {"bbox_norm": [0, 0, 1, 1]}}, key=KEY)
        jobs["unfinished"] = unfinished["job_id"]   # the server stops under it

    async def after(client, queue):
        status = await settled(client, jobs["done"], "completed")
        assert status["processed_images"] == 2
        assert await results(client, jobs["done"]) == jobs["results"] == {
            (0, 0): (0, "p0:0"), (0, 1): (1, "p1:0")}
        _, answer = await call(client, "GET", f"/jobs/{jobs['done']}/results")
        assert [r["reasons"] for r in answer["results"]] == [["p0"], ["p1"]]
        assert (await call(client, "GET", f"/jobs/{jobs['done']}/status", OTHER_KEY))[0] == 404
        failed = await settled(client, jobs["unfinished"], "failed")
        assert "restarted" in failed["error_message"]
        _, listed = await call(client, "GET", "/project")
        assert jobs["project"] in [p["project_id"] for p in listed["projects"]]
        # The uploads are still there: an output of the restored job can be made again.
        assert (await call(client, "POST", f"/jobs/{jobs['done']}/regenerate/0"))[0] == 200
        queue.finish("p0")
        await settled(client, jobs["done"], "completed")
        assert (await results(client, jobs["done"]))[0, 0] == (1, "p0:0")

    served(before, tmp_path)
    (tmp_path / "jobs" / "job_older_format.json").write_text('{"id": "job_older_format", '
                                                             '"status": "completed"}')
    served(after, tmp_path)
    hooks = json.loads((tmp_path / "webhooks.json").read_text())
    assert [hook["url"] for hook in hooks.values()] == [HOOK]
    written = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert KEY.encode() not in written and OTHER_KEY.encode() not in written
