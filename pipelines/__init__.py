"""All of the pack's logic: pure torch and numpy, importing nothing from ComfyUI."""
