"""What the Comfy registry and the editor get from the pack: metadata that matches the
requirements, an archive with what runs and nothing only development needs, `comfy node validate`
passing, and one up-to-date thumbnail per template.

The folder is not called `packaging`: pytest's importlib mode registers each test folder as a
module of that name, which hid the `packaging` library from every test collected after it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pack_paths import PACK_ROOT
from region_repair.pipelines.core.samples import sample_paths

WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
COMFY = Path(sys.executable).parent / "comfy"
DEVELOPMENT_ONLY = ("tests/", "bench/", "host/", ".ci/", "Makefile", "scripts/build_host.py",
                    "scripts/demo.py", "docs/images/", "assets/photos/people/")


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split(" #")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_project_dependencies_are_the_requirements():
    project = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == requirement_lines(PACK_ROOT / "requirements.txt")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_every_template_has_a_small_square_thumbnail_made_from_it(workflow):
    """The JPEG's comment is the digest of the workflow it was drawn from (scripts/demo.py); a
    workflow changed since means a stale picture: run scripts/build_workflows.py."""
    thumbnail = workflow.with_suffix(".jpg")
    assert thumbnail.exists(), f"no thumbnail: run scripts/build_workflows.py ({thumbnail.name})"
    assert thumbnail.stat().st_size <= 60_000
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (512, 512)
        digest = image.info.get("comment", b"").decode()
    assert digest == hashlib.sha256(workflow.read_bytes()).hexdigest(), \
        f"{thumbnail.name} is older than its workflow: run scripts/build_workflows.py"


@pytest.fixture(scope="module")
def archive(tmp_path_factory, monkeypatch_module):
    """The archive `comfy node pack` builds (git-tracked files minus .comfyignore), listed."""
    file_utils = pytest.importorskip("comfy_cli.file_utils")
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tracked files")
    target = tmp_path_factory.mktemp("pack") / "node.zip"
    monkeypatch_module.chdir(PACK_ROOT)
    file_utils.zip_files(target)
    with zipfile.ZipFile(target) as packed:
        return set(packed.namelist())


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_archive_holds_what_runs(archive):
    needed = {"__init__.py", "pyproject.toml", "requirements.txt", "requirements-mediapipe.txt",
              "LICENSE", "README.md", "scripts/install_mediapipe.py"}
    needed |= {str(path.relative_to(PACK_ROOT)) for folder in ("nodes", "pipelines", "serving")
               for path in (PACK_ROOT / folder).rglob("*.py")}
    needed |= {f"workflows/{path.name}" for path in WORKFLOWS}
    # The served endpoints build their prompts from the API twins.
    needed |= {f"workflows_api/{path.name}" for path in WORKFLOWS}
    needed |= {f"workflows/{path.stem}.jpg" for path in WORKFLOWS}
    photos = PACK_ROOT / "assets" / "photos"
    for name in sample_paths(PACK_ROOT / "workflows") | {"CREDITS.md"}:
        files = [p for p in (photos / name).iterdir()] if (photos / name).is_dir() \
            else [photos / name]
        needed |= {str(path.relative_to(PACK_ROOT)) for path in files}
    assert needed <= archive, sorted(needed - archive)


def test_the_archive_leaves_out_what_only_development_needs(archive):
    assert not [name for name in archive if name.startswith(DEVELOPMENT_ONLY)]


def test_comfy_node_validate_passes():
    if not COMFY.exists():
        pytest.skip("comfy-cli is not installed (make host installs it)")
    result = subprocess.run([str(COMFY), "--skip-prompt", "--no-json", "node", "validate"],
                            cwd=PACK_ROOT, capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All validation checks passed" in result.stdout, result.stdout
