"""Garment recolour: target, colour transfer, the set, garment mask."""
