"""pipelines/ is pure: no module imports ComfyUI, statically or when actually imported."""

from __future__ import annotations

import ast
import subprocess
import sys

from pack_paths import PACK_ROOT

COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "nodes",
                 "folder_paths", "server", "execution", "node_helpers"}


def pipeline_modules():
    return sorted((PACK_ROOT / "pipelines").rglob("*.py"))


def imported_top_levels(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_there_are_pipeline_modules():
    assert len(pipeline_modules()) >= 2


def test_no_pipeline_module_imports_comfyui():
    offenders = {str(path.relative_to(PACK_ROOT)): sorted(set(imported_top_levels(path))
                                                          & COMFY_MODULES)
                 for path in pipeline_modules()}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_every_pipeline_module_loads_no_comfyui():
    modules = [".".join(("region_repair", *path.relative_to(PACK_ROOT).with_suffix("").parts))
               for path in pipeline_modules() if path.name != "__init__.py"]
    script = (
        "import sys, types, importlib\n"
        f"stub = types.ModuleType('region_repair'); stub.__path__ = [{str(PACK_ROOT)!r}]\n"
        "sys.modules['region_repair'] = stub\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(COMFY_MODULES)!r}))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd="/", check=True)
    assert result.stdout.strip() == "[]"


# Imports go one way: a package imports only itself and packages of a lower rank.
RANKS = {"core": 0, "geometry": 1, "repair": 2, "recolor": 3, "detection": 3, "review": 3,
         "vendors": 3}


def test_sub_packages_import_only_downward():
    assert {path.parent.name for path in pipeline_modules()} - {"pipelines"} == set(RANKS)
    upward = []
    for path in pipeline_modules():
        own = path.parent.name
        if own == "pipelines":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                target = node.module.split(".")[0]
                if RANKS[target] >= RANKS[own]:
                    upward.append(f"{path.relative_to(PACK_ROOT)} imports {target}")
    assert upward == []
