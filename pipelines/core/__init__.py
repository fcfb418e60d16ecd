"""Tensor conventions, choices, the cancel and progress callbacks, the info contract, colour
science, errors, the Generator protocol, the bundled sample photos."""
