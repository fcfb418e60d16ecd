# The README's two commands. Both build the host (.venv: torch, ComfyUI 0.3.75, test tools) if it
# is missing; a re-run on a built machine takes seconds.
PYTHON ?= python3
VENV_PY := .venv/bin/python

.PHONY: host demo test bench

host:
	$(PYTHON) scripts/build_host.py

demo: host
	$(VENV_PY) scripts/demo.py

test: host
	$(VENV_PY) -m pytest -c tests/pytest.ini tests

# Not one of the README's two commands: a measurement (bench/README.md), not a test.
bench: host
	for script in bench/*.py; do $(VENV_PY) $$script || exit 1; done
