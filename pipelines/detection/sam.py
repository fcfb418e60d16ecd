"""SAM refinement: boxes or points to shape masks with a user-supplied segment-anything checkpoint.

No SAM weights ship with any Python package, so the checkpoint comes from the user (ComfyUI's
`sams` model folder; the node resolves it). The model is built from the checkpoint's own tensor
shapes, so the official ViT-B/L/H files and smaller compatible models all load without naming their
type. segment_anything (and the torchvision it imports) is imported only when a model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from ..core.cancel import never_cancelled
from ..core.errors import MissingDependencyError
from ..core.tensors import to_uint8_frames
from ..geometry.masks import support_box
from .detect import Detection, Detections

CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".safetensors")
OFFICIAL_CHECKPOINTS = "sam_vit_b_01ec64.pth (375 MB), sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth"
CHECKPOINT_SOURCE = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
# The mask decoder's attention head count is not visible in tensor shapes; every released SAM
# uses 8.
DECODER_HEADS = 8


def missing_checkpoint_message(folders: list[str], name: str | None = None) -> str:
    """The error for a missing SAM checkpoint: where to put one and which files work."""
    where = "\n".join(f"  {folder}" for folder in folders) or "  (no sams folder registered)"
    what = f"SAM checkpoint {name!r} not found" if name else "no SAM checkpoint found"
    return (f"{what}. Put a segment-anything checkpoint ({OFFICIAL_CHECKPOINTS}; from "
            f"{CHECKPOINT_SOURCE}) into one of:\n{where}\nThen refresh the node. The pack never "
            "downloads models.")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class SamConfig:
    """What `build_sam` needs, read from a checkpoint's tensor shapes."""
    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    out_chans: int
    window_size: int
    global_attn_indexes: tuple[int, ...]
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    attention_downsample_rate: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int


def sam_config(state: dict[str, torch.Tensor]) -> SamConfig:
    """Infer the model's configuration from its state_dict (official SAM layout)."""
    required = ("image_encoder.patch_embed.proj.weight", "image_encoder.pos_embed",
                "image_encoder.blocks.0.attn.rel_pos_h", "prompt_encoder.mask_downscaling.3.weight",
                "mask_decoder.mask_tokens.weight")
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"sam checkpoint: not a segment-anything state_dict (missing "
                         f"{', '.join(missing)})")
    embed_dim, _, patch_size, _ = state["image_encoder.patch_embed.proj.weight"].shape
    grid = state["image_encoder.pos_embed"].shape[1]
    depth = 1 + max(int(m.group(1)) for key in state
                    if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", key)))
    rel = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape for i in range(depth)]
    head_dim = rel[0][1]
    # Windowed blocks have relative positions over 2*window-1; global ones over the whole grid.
    global_blocks = tuple(i for i, shape in enumerate(rel) if shape[0] == 2 * grid - 1)
    windowed = [shape[0] for shape in rel if shape[0] != 2 * grid - 1]
    decoder_depth = 1 + max(int(m.group(1)) for key in state
                            if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", key)))
    cross = state["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
    iou_layers = 1 + max(int(m.group(1)) for key in state
                         if (m := re.match(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.",
                                           key)))
    return SamConfig(
        img_size=grid * patch_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
        num_heads=embed_dim // head_dim,
        mlp_ratio=state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        out_chans=state["image_encoder.neck.0.weight"].shape[0],
        window_size=(windowed[0] + 1) // 2 if windowed else 0,
        global_attn_indexes=global_blocks,
        mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        decoder_depth=decoder_depth,
        decoder_mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        attention_downsample_rate=cross.shape[1] // cross.shape[0],
        num_multimask_outputs=state["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        iou_head_depth=iou_layers,
        iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])


def _segment_anything():
    try:
        from segment_anything import modeling  # imports torchvision
    except ImportError as error:
        raise MissingDependencyError("SAM refinement needs segment-anything: "
                                     "pip install \"segment-anything>=1.0,<2\"") from error
    return modeling


def build_sam(config: SamConfig):
    """An untrained `segment_anything.modeling.Sam` of this configuration (eval mode)."""
    modeling = _segment_anything()
    grid = config.img_size // config.patch_size
    encoder = modeling.ImageEncoderViT(
        img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
        depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
        out_chans=config.out_chans, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        window_size=config.window_size, global_attn_indexes=config.global_attn_indexes)
    prompt = modeling.PromptEncoder(
        embed_dim=config.out_chans, image_embedding_size=(grid, grid),
        input_image_size=(config.img_size, config.img_size), mask_in_chans=config.mask_in_chans)
    decoder = modeling.MaskDecoder(
        num_multimask_outputs=config.num_multimask_outputs,
        transformer=modeling.TwoWayTransformer(
            depth=config.decoder_depth, embedding_dim=config.out_chans,
            mlp_dim=config.decoder_mlp_dim, num_heads=DECODER_HEADS,
            attention_downsample_rate=config.attention_downsample_rate),
        transformer_dim=config.out_chans, iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim)
    return modeling.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


@lru_cache(maxsize=1)
def _load_cached(path: str, modified: float, device: str):
    state = load_state_dict(Path(path))
    sam = build_sam(sam_config(state))
    sam.load_state_dict(state)
    return sam.to(device)


def load_sam(path: Path, device: torch.device | str = "cpu"):
    """Load a SAM checkpoint (kept in memory until another file or device is asked for)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(missing_checkpoint_message([str(path.parent)], path.name))
    return _load_cached(str(path.resolve()), path.stat().st_mtime, str(torch.device(device)))


@dataclass(frozen=True)
class SamPrompt:
    """One object to segment in image `batch_index`: a box (x0, y0, x1, y1) and/or points
    (x, y) with labels 1 (object) or 0 (background), in the image's pixels."""
    batch_index: int
    box: tuple[int, int, int, int] | None = None
    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()


def parse_points(text: str, width: int, height: int) -> list[tuple[float, float, int]]:
    """`x, y` or `x, y, label` per line (or separated by ';'), pixels inside the `width` x
    `height` image; label 1 = object (the default), 0 = background."""
    points = []
    for item in re.split(r"[;\n]", text):
        if not item.strip():
            continue
        try:
            values = [float(v) for v in item.split(",")]
        except ValueError:
            raise ValueError(f"points: {item.strip()!r} is not 'x, y' or 'x, y, label'") from None
        if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0, 1)):
            raise ValueError(f"points: {item.strip()!r} is not 'x, y' or 'x, y, label' with "
                             "label 0 or 1")
        x, y = values[:2]
        if not (0 <= x < width and 0 <= y < height):  # also refuses nan and inf
            raise ValueError(f"points: {item.strip()!r} lies outside the {width}x{height} "
                             f"image; x must be 0..{width - 1} and y 0..{height - 1} pixels")
        points.append((x, y, int(values[2]) if len(values) == 3 else 1))
    return points


def segment(sam, image: torch.Tensor, prompts: list[SamPrompt],
            step: Callable[[], None] = never_cancelled) -> list[tuple[torch.Tensor, float]]:
    """One `[H, W]` mask (float 0/1, CPU) and SAM's predicted IoU per prompt: of SAM's three
    candidates, the one it scores highest. Each image is encoded once. `step` runs once per
    prompt."""
    from segment_anything import SamPredictor

    frames = to_uint8_frames(image)
    predictor = SamPredictor(sam)
    masks: list[tuple[torch.Tensor, float] | None] = [None] * len(prompts)
    for b in sorted({p.batch_index for p in prompts}):
        predictor.set_image(frames[b])
        for index, prompt in enumerate(prompts):
            if prompt.batch_index != b:
                continue
            step()
            with torch.inference_mode():
                candidates, scores, _ = predictor.predict(
                    point_coords=np.array(prompt.points, np.float32) if prompt.points else None,
                    point_labels=np.array(prompt.point_labels) if prompt.points else None,
                    box=np.array(prompt.box, np.float32) if prompt.box is not None else None,
                    multimask_output=True)
            best = int(np.argmax(scores))
            masks[index] = (torch.from_numpy(candidates[best].astype(np.float32)),
                            float(scores[best]))
    return masks


def refine(sam, image: torch.Tensor, found: Detections,
           points: list[tuple[float, float, int]] = (), clip_to_box: bool = True,
           step: Callable[[], None] = never_cancelled) -> Detections:
    """Replace each detection's mask by SAM's segmentation of its box (plus the `points` that
    fall inside the box). With `clip_to_box`, the mask stays inside the box. A detection SAM
    returns nothing for keeps its old mask, and a note says so."""
    prompts = []
    for item in found.items:
        x0, y0, x1, y1 = item.box
        inside = [p for p in points if x0 <= p[0] < x1 and y0 <= p[1] < y1]
        prompts.append(SamPrompt(item.batch_index, item.box, tuple((x, y) for x, y, _ in inside),
                                 tuple(label for _, _, label in inside)))
    masks = segment(sam, image, prompts, step)
    notes, out = [], []
    for item, (mask, _) in zip(found.items, masks):
        if clip_to_box:
            x0, y0, x1, y1 = item.box
            clipped = torch.zeros_like(mask)
            clipped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
            mask = clipped
        if not mask.any():
            notes.append(f"SAM found nothing in {item.describe()}; kept the detector's mask")
            mask = item.mask
        out.append(mask)
    return found.with_masks(out, notes)


def boxes_from_mask(mask: torch.Tensor, label: str = "mask") -> Detections:
    """The connected parts of a `[B, H, W]` mask as detections (confidence 1), so SAM can turn a
    rough mask's boxes into shapes."""
    import cv2

    batch, height, width = mask.shape
    items = []
    for b in range(batch):
        support = (mask[b] > 0.5).cpu().numpy().astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(support, connectivity=8)
        for part in range(1, count):
            x, y, w, h = (int(v) for v in stats[part, :4])
            items.append(Detection(b, (x, y, x + w, y + h), 1.0, label,
                                   torch.from_numpy((labels == part).astype(np.float32))))
    return Detections(label, batch, height, width, items)


def from_points(sam, image: torch.Tensor, points: list[tuple[float, float, int]],
                step: Callable[[], None] = never_cancelled) -> Detections:
    """No boxes: all points prompt one object per image; its confidence is SAM's predicted IoU
    (clamped to 0..1) and its box the mask's bounding box."""
    if not any(label == 1 for *_, label in points):
        raise ValueError("points: give at least one object point (label 1), or connect "
                         "detections or a mask")
    batch, height, width = image.shape[:3]
    coords = tuple((x, y) for x, y, _ in points)
    labels = tuple(label for *_, label in points)
    results = segment(sam, image, [SamPrompt(b, None, coords, labels) for b in range(batch)],
                      step)
    items = []
    for b, (mask, score) in enumerate(results):
        box = support_box(mask)
        if box is not None:
            items.append(Detection(b, box, min(max(score, 0.0), 1.0), "sam", mask))
    return Detections("sam_points", batch, height, width, items)
