"""The served endpoints' configuration: off by default, env and file, errors never show a key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pack_paths import PACK_ROOT
from region_repair.serving import prompts, register_endpoints, workflows
from region_repair.serving.config import ConfigError, load

KEY = "sk-local-0123456789"


def env_for(tmp_path, **variables):
    return {"XDG_CONFIG_HOME": str(tmp_path / "nothing"), **variables}


def test_off_by_default(tmp_path):
    config = load(env_for(tmp_path))
    assert not config.enabled and config.vendors == {}
    assert register_endpoints(env_for(tmp_path)) is False  # and no ComfyUI server is imported


def test_environment_turns_it_on_with_keys(tmp_path):
    config = load(env_for(tmp_path, REGION_REPAIR_SERVE="1",
                          REGION_REPAIR_SERVE_PHOTIO_KEYS=f"{KEY}, {KEY}-2",
                          REGION_REPAIR_SERVE_PICPIK_KEYS="public-key-1:private-key-1"))
    assert config.enabled
    assert config.vendor("photio").keys == (KEY, f"{KEY}-2")
    assert config.vendor("picpik").key_pairs == (("public-key-1", "private-key-1"),)
    assert config.vendor("octoai").keys == ()
    assert KEY not in repr(config)


def test_file_settings_and_the_variable_wins(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text(f"""
[serve]
enabled = true
max_body_mb = 2
max_jobs_per_key = 3
[serve.photio]
keys = ["{KEY}"]
checkpoint = "inpaint.safetensors"
[serve.picpik]
keys = [{{public_key = "public-key-1", private_key = "private-key-1"}}]
loras = {{"Ink Style v2" = "ink_style.safetensors", unused = " "}}
""")
    config = load({"REGION_REPAIR_SERVE_CONFIG": str(path)})
    assert config.enabled and config.limits.max_body_bytes == 2 * 1024 * 1024
    assert config.limits.max_jobs_per_key == 3
    assert config.vendor("photio").checkpoint == "inpaint.safetensors"
    assert config.vendor("picpik").loras == {"Ink Style v2": "ink_style.safetensors"}
    assert config.vendor("picpik").key_pairs == (("public-key-1", "private-key-1"),)
    assert config.vendor("picpik").loras == {"Ink Style v2": "ink_style.safetensors"}
    assert not load({"REGION_REPAIR_SERVE_CONFIG": str(path), "REGION_REPAIR_SERVE": "0"}
                    ).enabled


@pytest.mark.parametrize("text, named", [
    ("max_body_mb = -1", "max_body_mb"),
    ("max_jobs_per_key = \"four\"", "max_jobs_per_key"),
    ("[serve.photio]\nkeys = \"one\"", "keys"),
    ("[serve.photio]\nkeys = [\"has space-0123\"]", "keys"),
    ("[serve.picpik]\nkeys = [\"no-private-part\"]", "public_key"),
    ("[serve.octoai]\nloras = [\"a.safetensors\"]", "loras"),
    ("[serve.piktid]\nmodels = {a = 1}", "models"),
])
def test_a_bad_setting_is_named(tmp_path, text, named):
    path = tmp_path / "serve.toml"
    path.write_text("[serve]\nenabled = true\n" + text + "\n")
    with pytest.raises(ConfigError, match=named) as error:
        load({"REGION_REPAIR_SERVE_CONFIG": str(path)})
    assert "has space" not in str(error.value)


def test_a_bad_key_in_the_environment_is_named_not_shown(tmp_path):
    with pytest.raises(ConfigError, match="REGION_REPAIR_SERVE_PICPIK_KEYS") as error:
        load(env_for(tmp_path, REGION_REPAIR_SERVE="1",
                     REGION_REPAIR_SERVE_PICPIK_KEYS="public-only-123456"))
    assert "public-only" not in str(error.value)


def test_a_file_inside_the_pack_is_refused():
    with pytest.raises(ConfigError, match="inside the pack"):
        load({"REGION_REPAIR_SERVE_CONFIG": str(PACK_ROOT / "README.md")})


def test_a_named_file_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not a file"):
        load({"REGION_REPAIR_SERVE_CONFIG": str(tmp_path / "missing.toml")})


def test_a_config_error_keeps_the_endpoints_off(tmp_path, caplog):
    assert register_endpoints(env_for(tmp_path, REGION_REPAIR_SERVE="maybe")) is False
    assert "stay off" in caplog.text


def test_every_workflow_the_endpoints_build_from_is_shipped():
    names = workflows()
    assert len(names) == 13 and prompts.missing(names) == []
    assert prompts.missing(["No such workflow"]) == ["No such workflow"]


def test_only_comfy_py_needs_comfyui():
    """Everything but serving/comfy.py (and the registration that imports it) loads without
    ComfyUI, so the request checks, signing and config are tested without a server."""
    modules = [f"region_repair.serving.{path.stem}" for path in
               sorted((PACK_ROOT / "serving").glob("*.py"))
               if path.stem not in ("__init__", "comfy")] + ["region_repair.serving"]
    script = (
        "import sys, types, importlib\n"
        f"stub = types.ModuleType('region_repair'); stub.__path__ = [{str(PACK_ROOT)!r}]\n"
        "sys.modules['region_repair'] = stub\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'comfy', 'comfy_api', 'comfy_execution', 'nodes', 'folder_paths', 'server', "
        "'execution'}))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd="/", check=True)
    assert len(modules) >= 10 and result.stdout.strip() == "[]"
