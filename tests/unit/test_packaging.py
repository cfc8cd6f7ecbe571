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
    assert re.search(r"pip install --no-deps (--no-compile )?-r runtime\.lock", dockerfile)
    assert re.search(r"^FROM python:3\.11-slim AS build$", dockerfile, re.M)  # what is built is left behind
    assert "COPY --from=build /opt/venv /opt/venv" in dockerfile
    assert "MODEL_PATH=/runpod-volume/higgs_audio" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["higgs-tts", "serve", "runpod"]')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", ".venv", ".git"} <= set(ignored)
    assert not ({"core", "adapters", "app", "boson_multimodal", "higgs_tts"} & set(ignored))


def test_the_tests_run_the_versions_the_image_ships():
    """The image's lock constrains the test install (make test), so the two cannot drift apart;
    the tests' own pins agree with it (torch: PyPI's CUDA build in the image, the CPU build of the
    same release in the tests)."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PIP := .*-c constraints-test\.txt -c runtime\.lock", makefile, re.M)
    constraints = {}
    for line in (ROOT / "constraints-test.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            constraints[_name(name)] = version.strip()
    pins = locked()
    assert constraints, "constraints-test.txt pins nothing"
    for name, version in constraints.items():
        assert name in pins, f"{name} is pinned for the tests but not in runtime.lock"
        assert pins[name].split("+")[0] == version.split("+")[0], (name, pins[name], version)
