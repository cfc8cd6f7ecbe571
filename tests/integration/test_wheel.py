"""The installed package is complete: the wheel built from the tree (what the image's
`pip install .` installs), in a fresh environment outside the checkout, serves the playground,
writes the sample voices and synthesises. A file the code reads next to itself but the wheel
lacks fails here (the playground and the sample voices once did: GET / was a 500)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.integration.runpod_helpers import ROOT, free_port

pytestmark = pytest.mark.slow
PROJECT_FILES = ("core", "adapters", "app", "boson_multimodal", "higgs_tts")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(out), str(ROOT)], check=True, cwd=out)
    (built,) = out.glob("higgs_tts-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel; its dependencies are this environment's (linked,
    without the checkout's editable install), so only the project's own files come from the wheel."""
    root = tmp_path_factory.mktemp("clean")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    site = Path(subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    deps = root / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if entry.name.startswith(("__editable__", "higgs_tts-")) or entry.suffix == ".pth" or \
                entry.name in PROJECT_FILES:
            continue
        (deps / entry.name).symlink_to(entry)
    (site / "dependencies.pth").write_text(f"{deps}\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(site), str(wheel)], check=True)
    return root / "venv" / "bin" / "python"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "HIGGS_DEVICE": "cpu", "OTEL_TRACES_EXPORTER": "none", "HIGGS_STORE": "none"}


def run(python: Path, code: str, cwd: Path) -> str:
    result = subprocess.run([str(python), "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_wheel_holds_the_files_the_code_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "adapters/http/playground.html" in names
    voices = {n for n in names if n.startswith("boson_multimodal/sample_voices/")}
    assert len([n for n in voices if n.endswith(".flac")]) == 3 and len([n for n in voices if n.endswith(".txt")]) == 3
    for package in PROJECT_FILES:
        assert f"{package}/__init__.py" in names, package
    assert not [n for n in names if n.startswith("tests/")]


def test_the_installed_package_comes_from_the_wheel_not_the_checkout(installed, tmp_path):
    where = json.loads(run(installed, "import json, app, boson_multimodal; "
                                      "print(json.dumps([app.__file__, boson_multimodal.__file__]))", tmp_path))
    assert all(str(ROOT) not in path and str(installed.parents[1]) in path for path in where), where


def test_installed_it_writes_the_sample_voices_and_synthesises(installed, demo_bundle, tmp_path):
    out = run(installed, "from pathlib import Path; from boson_multimodal.voices import install_sample_voices; "
                         f"print(','.join(install_sample_voices(Path({str(tmp_path / 'voices')!r}))))", tmp_path)
    assert sorted(out.strip().split(",")) == ["sample_uk_male", "sample_us_female", "sample_us_male"]
    assert all((tmp_path / "voices" / f"{v}.flac").stat().st_size > 10_000 for v in out.strip().split(","))
    wav = tmp_path / "hello.wav"
    env = {**clean_env(), "MODEL_PATH": str(demo_bundle.root)}
    result = subprocess.run([str(installed), "-c", "import sys; from app.cli import main; sys.exit(main())", "synth",
                             "--text", "Installed.", "--seed", "3", "--out", str(wav)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 10_000


def test_installed_it_serves_the_playground(installed, demo_bundle, tmp_path):
    port = free_port()
    env = {**clean_env(), "MODEL_PATH": str(demo_bundle.root)}
    proc = subprocess.Popen([str(installed), "-c", "import sys; from app.cli import main; sys.exit(main())", "serve",
                             "http", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        assert response.status == 200 and "higgs-tts playground" in page
    finally:
        proc.terminate()
        proc.wait(30)
