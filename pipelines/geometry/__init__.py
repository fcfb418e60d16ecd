"""Masks, crop windows, stitching and blending (the seamless blend included), boxes, outpaint
padding."""
