"""The architecture's dependency rule, checked on every module's imports."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)
PROJECT = {"core", "adapters", "boson_multimodal", "app"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules(package: str):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules under {package}"
    return files


def test_core_imports_only_stdlib_and_core():
    for path in modules("core"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top in STDLIB or top == "core" or top == "__future__", f"{path}: {name}"


def test_boson_multimodal_imports_no_service_code():
    for path in modules("boson_multimodal"):
        for name in imports_of(path):
            assert name.split(".")[0] not in {"core", "adapters", "app"}, f"{path}: {name}"


def test_adapters_import_core_and_never_each_other():
    for path in modules("adapters"):
        own = path.relative_to(ROOT / "adapters").parts[0]
        for name in imports_of(path):
            parts = name.split(".")
            assert parts[0] != "app", f"{path}: {name}"
            if parts[0] == "adapters" and len(parts) > 1:
                assert parts[1] == own, f"{path} imports another adapter: {name}"


def test_the_rule_itself_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom adapters.s3 import x\n")
    assert imports_of(bad) == {"torch", "adapters.s3"}
