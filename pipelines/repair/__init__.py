"""The repair engines: classical fill, colour harmonising, reference warp, Detail Repair's modes,
the AI watermark."""
