"""The architecture's dependency rule, checked on every module's imports."""

import ast
import sys
from pathlib import Path

import pytest

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


def imported_names(path: Path) -> set[str]:
    """`module.name` for every `from module import name`."""
    return {f"{node.module}.{alias.name}" for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}


def modules(package: str):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules under {package}"
    return files


def test_core_imports_only_stdlib_and_core():
    for path in modules("core"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top in STDLIB or top == "core" or top == "__future__", f"{path}: {name}"


# inside core: the domain stands alone, ports know the domain, the service knows both
CORE_LAYERS = {"domain": {"domain"}, "ports": {"domain", "ports"}, "service": {"domain", "ports", "service"}}


@pytest.mark.parametrize("layer", sorted(CORE_LAYERS))
def test_core_layers_import_only_the_layers_below(layer):
    for path in modules(f"core/{layer}"):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "core":
                assert len(parts) > 1 and parts[1] in CORE_LAYERS[layer], f"{path}: {name}"


DRIVING = ("grpc", "http", "runpod")  # adapters that take requests: they go through the service


@pytest.mark.parametrize("adapter", DRIVING)
def test_driving_adapters_reach_the_engine_and_voices_only_through_the_service(adapter):
    for path in modules(f"adapters/{adapter}"):
        names = imported_names(path)
        assert "core.ports.speech_engine.SpeechEngine" not in names, path
        assert not any(n.startswith("core.ports.voice_library.") for n in names), path
        assert "core.service.generate_speech.GenerateSpeech" not in names, path


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
    bad.write_text("import torch\nfrom adapters.s3 import x\nfrom core.ports.speech_engine import SpeechEngine\n")
    assert imports_of(bad) == {"torch", "adapters.s3", "core.ports.speech_engine"}
    assert "core.ports.speech_engine.SpeechEngine" in imported_names(bad)
    assert "ports" not in CORE_LAYERS["domain"]


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def import_cycles(packages) -> list[list[str]]:
    """Files that import each other, directly or round about (imports inside functions count):
    each cycle as its files, found by Tarjan's strongly connected components."""
    files = [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))]
    graph = {path: {target for name in imports_of(path) if (target := _module_file(name)) and target != path}
             for path in files}
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    cycles: list[list[str]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(str(member.relative_to(ROOT)))
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for path in files:
        if path not in index:
            visit(path)
    return cycles


def test_no_two_files_import_each_other_anywhere():
    assert import_cycles(("core", "adapters", "app", "boson_multimodal", "bench", "tools", "integrations")) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from loop.b import g\n")  # a deferred import counts
    (package / "b.py").write_text("from loop.c import h\n")
    (package / "c.py").write_text("import loop.a\n")
    (package / "d.py").write_text("import loop.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_cycles(("loop",)) == [["loop/a.py", "loop/b.py", "loop/c.py"]]
