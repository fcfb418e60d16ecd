"""Detect Objects and SAM Refine in-process: outputs, model folders, errors, and the pack without
mediapipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_sam
from pack_paths import COMFYUI, PACK_ROOT, PACKAGE

PHOTOS = PACK_ROOT / "assets" / "photos"
DEFAULTS = dict(confidence=0.3, max_num_detections=0, sort_by="confidence", min_area_ratio=0.0,
                max_area_ratio=1.0)


@pytest.fixture(scope="module")
def nodes(pack):
    from region_repair.nodes import detect_nodes

    return detect_nodes


@pytest.fixture
def model_folder(tmp_path, monkeypatch):
    """Point one of ComfyUI's model folders at an empty temporary folder."""
    import folder_paths

    pointed = []

    def point(name: str):
        folder = tmp_path / name
        folder.mkdir()
        exts = folder_paths.folder_names_and_paths[name][1]
        monkeypatch.setitem(folder_paths.folder_names_and_paths, name, ([str(folder)], exts))
        folder_paths.filename_list_cache.pop(name, None)
        pointed.append(name)
        return folder
    yield point
    for name in pointed:  # the listing cache would otherwise outlive the folder's swap
        folder_paths.filename_list_cache.pop(name, None)


def photo(name: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(PHOTOS / name).convert("RGB"),
                                       np.float32) / 255)[None]


def run(node, **inputs):
    return node.PREPARE_CLASS_CLONE({"UNIQUE_ID": "7"}).execute(**inputs).result


def test_the_pack_registers_its_model_folders(nodes):
    import folder_paths

    for name in ("sams", "ultralytics"):
        assert name in folder_paths.folder_names_and_paths


def test_detect_outputs_detections_a_union_and_per_object_masks(nodes):
    image = photo("hand_call.jpg")
    before = image.clone()
    found, union, objects = run(nodes.Detect, image=image, detector="hands_mediapipe",
                                yolo_model="(none)", **DEFAULTS)
    assert len(found) == 2 and found.counts() == [1 * 2]
    assert union.shape == (1, 512, 384) and objects.shape == (2, 512, 384)
    assert torch.equal(union[0], objects.amax(0))
    assert torch.equal(image, before)
    # Nothing found: one blank mask, so downstream MASK inputs still get a batch.
    found, union, objects = run(nodes.Detect, image=photo("chelsea.png"), detector="face_haar",
                                yolo_model="(none)", **DEFAULTS)
    assert len(found) == 0 and objects.shape == (1, 300, 451) and not objects.any()


def test_the_detector_combo_lists_the_seed_names_and_yolo_files(nodes, model_folder):
    folder = model_folder("ultralytics")
    (folder / "bbox").mkdir()
    (folder / "bbox" / "person_yolov8s-seg.pt").write_bytes(b"not loaded")
    inputs = {item.id: item for item in nodes.Detect.GET_SCHEMA().inputs}
    for name in ("face_yolov8n", "hand_yolov8n", "face_full_mediapipe", "face_short_mediapipe",
                 "face_mesh_mediapipe", "eyes_mesh_mediapipe", "hands_mediapipe",
                 "person_mediapipe", "face_haar", "eyes_haar", "yolo_file"):
        assert name in inputs["detector"].options
    assert inputs["yolo_model"].options == ["(none)", "bbox/person_yolov8s-seg.pt"]


def test_a_missing_yolo_file_says_where_to_put_it(nodes, model_folder):
    folder = model_folder("ultralytics")
    with pytest.raises(ValueError, match=r"face_yolov8n.pt not found(.|\n)*" + str(folder)):
        run(nodes.Detect, image=photo("astronaut.png"), detector="face_yolov8n",
            yolo_model="(none)", **DEFAULTS)


def test_sam_refine_without_a_checkpoint_says_where_to_put_one(nodes, model_folder):
    folder = model_folder("sams")
    with pytest.raises(ValueError, match=r"no SAM checkpoint found(.|\n)*" + str(folder)):
        run(nodes.SAMRefine, image=photo("astronaut.png"), sam_model="(none)", points="",
            clip_to_box=True)


def test_sam_refine_from_detections_a_mask_or_points(nodes, model_folder):
    tiny_sam.write_tiny_sam(model_folder("sams") / "tiny_sam.pth")
    assert "tiny_sam.pth" in {i.id: i for i in nodes.SAMRefine.GET_SCHEMA().inputs}[
        "sam_model"].options
    image = photo("astronaut.png")
    found, _, _ = run(nodes.Detect, image=image, detector="face_haar", yolo_model="(none)",
                      **DEFAULTS)
    refined, union, objects = run(nodes.SAMRefine, image=image, sam_model="tiny_sam.pth",
                                  detections=found, points="", clip_to_box=True)
    (item,) = refined.items
    assert item.box == found.items[0].box and objects.shape == (1, 512, 512)
    x0, y0, x1, y1 = item.box
    assert union[0, y0:y1, x0:x1].sum() == union.sum() > 0
    from_mask, _, _ = run(nodes.SAMRefine, image=image, sam_model="tiny_sam.pth",
                          mask=found.union_mask()[:, ::2, ::2], points="", clip_to_box=True)
    # a half-size mask is resized to the image (a pixel of rounding at the edges)
    (box,) = [d.box for d in from_mask.items]
    assert all(abs(a - b) <= 1 for a, b in zip(box, item.box))
    from_points, _, _ = run(nodes.SAMRefine, image=image, sam_model="tiny_sam.pth",
                            points="220, 130", clip_to_box=True)
    assert len(from_points) == 1 and from_points.items[0].label == "sam"


def test_the_pack_imports_without_mediapipe_and_haar_still_works(tmp_path):
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.modules["mediapipe"] = None  # as if it were not installed
        sys.path.insert(0, {str(COMFYUI)!r})
        from comfy.cli_args import args
        args.cpu = True
        import numpy as np, torch
        from PIL import Image
        spec = importlib.util.spec_from_file_location(
            {PACKAGE!r}, {str(PACK_ROOT / "__init__.py")!r},
            submodule_search_locations=[{str(PACK_ROOT)!r}])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[{PACKAGE!r}] = pack
        spec.loader.exec_module(pack)
        from region_repair.nodes import detect_nodes
        image = torch.from_numpy(np.asarray(Image.open({str(PHOTOS / "astronaut.png")!r}),
                                            np.float32) / 255)[None]
        settings = dict({DEFAULTS!r}, image=image, yolo_model="(none)")
        node = detect_nodes.Detect.PREPARE_CLASS_CLONE({{"UNIQUE_ID": "1"}})
        found = node.execute(detector="face_haar", **settings).result[0]
        print("haar", [d.box for d in found.items])
        try:
            node.execute(detector="face_short_mediapipe", **settings)
        except Exception as error:
            print(type(error).__name__, str(error))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "haar [(177, 66, 272, 161)]" in result.stdout
    assert "MissingDependencyError mediapipe is not installed" in result.stdout
    assert "pip install --no-deps mediapipe==0.10.21" in result.stdout
    assert "pip install -r requirements-mediapipe.txt" in result.stdout


def test_detect_stops_within_a_second_of_an_interrupt_inside_one_large_image(nodes, monkeypatch):
    """One 12 MP image's tiled search takes seconds (88 tiles); the node checks ComfyUI's
    interrupt per tile, not only per image: the Cancel press comes 0.3 s into the tiles."""
    import comfy.model_management as model_management

    pressed, timer = [], threading.Timer(0.3, model_management.interrupt_current_processing,
                                         (True,))
    tiles = nodes.detect_ops.tiles

    def tiles_then_press(height: int, width: int):
        if not pressed:
            pressed.append(time.monotonic() + 0.3)
            timer.start()
        return tiles(height, width)

    monkeypatch.setattr(nodes.detect_ops, "tiles", tiles_then_press)
    image = torch.rand(1, 3000, 4000, 3, generator=torch.Generator().manual_seed(0))
    try:
        with pytest.raises(model_management.InterruptProcessingException):
            run(nodes.Detect, image=image, detector="face_full_mediapipe", **DEFAULTS)
        latency = time.monotonic() - pressed[0]
    finally:
        timer.cancel()
        model_management.interrupt_current_processing(False)
    assert latency < 1.0, f"interrupt took {latency:.2f} s"
