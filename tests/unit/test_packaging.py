"""The image's recipe agrees with the project: every runtime dependency is locked, nothing for
tests or kernel compilation is, every package the project ships is copied, and the image starts
the RunPod worker with a health check."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "runtime.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_runtime_dependency_is_pinned_in_the_lock():
    pins = locked()
    missing = [d for d in project()["dependencies"] if _name(d) not in pins]
    assert missing == []
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values())


def test_the_lock_holds_no_test_tools_and_no_triton():
    pins = locked()
    test_tools = {_name(d) for d in project()["optional-dependencies"]["test"]}
    assert not (test_tools & set(pins))
    assert "triton" not in pins
    assert "torch" in pins and not pins["torch"].endswith("+cpu")


def test_the_dockerfile_copies_every_shipped_package_and_starts_the_worker():
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in packages:
        top = package.rstrip("*")
        assert re.search(rf"^COPY {top} {top}$", dockerfile, re.M), top
    assert "pip install --no-deps -r runtime.lock" in dockerfile
    assert "MODEL_PATH=/runpod-volume/higgs_audio" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["higgs-tts", "serve", "runpod"]')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", ".venv", ".git"} <= set(ignored)
    assert not ({"core", "adapters", "app", "boson_multimodal", "higgs_tts"} & set(ignored))
