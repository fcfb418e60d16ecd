"""A tiny random-weight SAM (0.17 M parameters) built from segment_anything.modeling, for tests.

The configuration follows /work/shared/reference/offline-models.md section 4, except that the mask
decoder uses 8 attention heads, as every released SAM does: head counts are invisible in a
checkpoint's tensor shapes, so the pack's loader assumes 8 (pipelines.detection.sam.DECODER_HEADS).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch


def build_tiny_sam(seed: int = 0):
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    torch.manual_seed(seed)
    encoder = ImageEncoderViT(img_size=256, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                              mlp_ratio=2, out_chans=32, qkv_bias=True,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                              window_size=4, global_attn_indexes=[1])
    # Random relative positions: zeros (the library's init) would hide a wrong window layout.
    for block in encoder.blocks:
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.02)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.02)
    prompt = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16),
                           input_image_size=(256, 256), mask_in_chans=4)
    decoder = MaskDecoder(transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64,
                                                        num_heads=8),
                          transformer_dim=32, iou_head_depth=2, iou_head_hidden_dim=32)
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


def write_tiny_sam(path: Path, seed: int = 0) -> Path:
    """Save a tiny SAM's state_dict as a checkpoint file (the official files' layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_tiny_sam(seed).state_dict(), path)
    return path
