"""The prepared GPU run cannot rot before a GPU arrives: `bench/device/run.sh --cpu` runs every
step on the CPU (the cuda-marked tests on the graphs' CPU stand-in, the engine, serving and cold
start benchmarks on the tiny and mid presets) and writes RESULTS.md; the install step puts the
carried wheels in a virtualenv made from another virtualenv's Python (as the GPU machine's is)
where they shadow that Python's packages while its torch stays visible; prepare.py's choice of
wheels keeps the machine's CUDA build and fits the carry limit; RESULTS.md shows no figure of a
step that did not finish."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.device import prepare
from bench.device.results import write_results

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "device" / "run.sh"


def run_sh(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN), *args], cwd=ROOT, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env})


@pytest.mark.slow
def test_the_cpu_rehearsal_runs_every_step_and_writes_results(tmp_path):
    done = run_sh(tmp_path, "--cpu")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    steps = {s["name"]: s for s in results["steps"]}
    assert list(steps) == ["cuda tests", "engine tiny", "engine mid", "serving tiny", "cold start tiny", "verify demo"]
    assert all(s["status"] == "ok" for s in steps.values())  # inside the 230-s budget, each in its own limit
    figures = results["figures"]
    tests = figures["tests"]
    assert len(tests) == 10 and all(t["outcome"] == "passed" for t in tests)
    assert {t["name"].split("[")[1] for t in tests} == {"float32]", "bfloat16]"}
    for preset in ("engine-tiny", "engine-mid"):
        ours = figures[preset]["results"]["higgs-tts"]
        assert ours["decode_ms_per_step"] > 0 and ours["ttfa_ms"] > 0 and ours["ttfa_cached_voice_ms"] > 0
    assert "transformers generate" in figures["engine-tiny"]["results"]
    batched = [r for r in figures["serving"] if r.get("mode") == "batched"]
    assert {(r["streams"], r["voice_cache"]) for r in batched} == {(n, c) for n in (1, 4, 8) for c in ("off", "on")}
    assert figures["cold"]["to_ready_s"] > figures["cold"]["imports_s"] > 0
    modes = {(r["text"], r["mode"]) for r in figures["verify"]["rows"]}
    assert len(modes) == 4 and all(r["wall_s_per_audio_s"] > 0 for r in figures["verify"]["rows"])
    assert figures["verify"]["concurrent"]["whisper_batches"] >= 1
    text = (tmp_path / "RESULTS.md").read_text()
    for heading in ("## CUDA tests", "## Engine, one stream (tiny)", "## Engine, one stream (mid)",
                    "## Serving, many streams (tiny)", "## Cold start (tiny)",
                    "## The ASR pass (demo-shaped random Whisper)", "## Steps"):
        assert heading in text
    assert "10 passed" in text and "Bandwidth floor:" in text and "x the floor" in text
    assert "`python bench/engine.py --preset mid --steps 30 --skip-hf --json engine-mid.json`" in text
    assert "/tmp/" not in text and str(ROOT) not in text
    assert (tmp_path / "logs.txt").stat().st_size > 0
    assert len(list(tmp_path.iterdir())) <= 8  # what the GPU machine sends back: at most 8 files


@pytest.mark.slow
def test_the_install_step_shadows_the_machines_packages_and_keeps_its_torch(tmp_path):
    """The project's Python is a virtualenv, as the GPU machine's is: a virtualenv made from it
    with --system-site-packages would not see its packages without run.sh's .pth file."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    prepare.project_wheel(wheels)
    venv = tmp_path / "venv"
    done = run_sh(tmp_path / "out", "--only", "cold start tiny", "--cpu", HIGGS_DEVICE_PYTHON=sys.executable,
                  HIGGS_DEVICE_VENV=str(venv), HIGGS_DEVICE_WHEELS=str(wheels))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import boson_multimodal, torch, transformers; "
                            "print(boson_multimodal.__file__, torch.__file__, transformers.__version__)"],
                           cwd=venv, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv))  # the carried wheel
    assert where[1].startswith(str(Path(sys.prefix)))  # the machine's torch
    install = (tmp_path / "out" / "install.log").read_text()
    assert "torch" in install and "transformers" in install
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [s["status"] for s in results["steps"]] == ["ok"]


def test_no_wheels_is_a_clear_refusal(tmp_path):
    done = run_sh(tmp_path / "out", HIGGS_DEVICE_PYTHON=sys.executable, HIGGS_DEVICE_WHEELS=str(tmp_path))
    assert done.returncode == 2 and "run bench/device/prepare.sh first" in done.stderr


def test_the_wheels_chosen_keep_the_machines_cuda_build_and_carry_the_model_code():
    lock = prepare.read_pins(ROOT / "runtime.lock")
    image = prepare.read_pins(ROOT / "bench" / "device" / "device-image.txt")
    essential, optional = prepare.choose(lock, image, "3.12")
    chosen = set(essential) | set(optional)
    model_code = {"transformers", "tokenizers", "huggingface-hub", "safetensors", "soundfile", "soxr", "cffi"}
    assert model_code <= set(essential)
    assert not {n for n in chosen if re.match(r"^(torch|triton|nvidia-|cuda-)", n)}
    assert not chosen & {"numpy", "packaging", "typing-extensions", "setuptools"}
    assert set(essential).isdisjoint(optional) and chosen <= set(lock)
    assert {"fastapi", "runpod", "av", "boto3"} <= set(optional)  # the service's own, when the budget holds them
    assert "grpcio" not in chosen  # the image has it


@pytest.mark.parametrize("budget_kib", [0, 5, 12, 100])
def test_the_optional_wheels_fit_the_budget_smallest_first(tmp_path, budget_kib):
    sizes = {"essential_one": 4, "small": 1, "medium": 3, "large": 6}  # KiB
    for name, kib in sizes.items():
        (tmp_path / f"{name}-1.0-py3-none-any.whl").write_bytes(b"x" * kib * 1024)
    dropped = prepare.fit(["small", "medium", "large"], tmp_path, budget_kib * 1024)
    kept = {p.name.split("-")[0] for p in tmp_path.glob("*.whl")}
    assert "essential_one" in kept  # never dropped
    total = sum(p.stat().st_size for p in tmp_path.glob("*.whl"))
    optional_total = total - 4 * 1024
    assert optional_total <= max(0, budget_kib * 1024 - 4 * 1024)
    assert set(dropped) | (kept - {"essential_one"}) == {"small", "medium", "large"}
    for name in dropped:  # each dropped one would not have fitted beside the kept ones
        assert total + sizes[name] * 1024 > budget_kib * 1024


def test_results_show_no_figure_of_a_step_that_did_not_finish(tmp_path):
    results = {
        "environment": {"device": "NVIDIA H100 80GB HBM3", "gpu_memory_gib": 79.1, "torch": "2.11.0+cu130",
                        "cuda": "13.0", "transformers": "5.24.0", "python": "3.12.3",
                        "copy_bandwidth_bytes_per_s": 3.0e12, "commit": "abc1234", "started": "now"},
        "steps": [
            {"name": "cuda tests", "command": "HIGGS_TEST_DEVICE=cuda python -m pytest -m cuda tests/cuda",
             "status": "failed (exit 1)", "seconds": 40.0},
            {"name": "engine full-size", "command": "python bench/engine.py --preset full-size-random",
             "status": "stopped at its limit (150 s)", "seconds": 150.0},
            {"name": "serving full-size", "command": "python bench/serving.py", "status": "not run: out of time",
             "seconds": 0.0},
        ],
        "figures": {"tests": [{"name": "test_a[float32]", "outcome": "passed", "seconds": 1.0, "message": ""},
                              {"name": "test_b[bfloat16]", "outcome": "failed", "seconds": 2.0,
                               "message": "AssertionError: 0.03 > 0.02"}]},
    }
    path = tmp_path / "RESULTS.md"
    write_results(path, results, cpu=False)
    text = path.read_text()
    assert "# Device run: NVIDIA H100 80GB HBM3" in text and "3000 GB/s" in text
    assert "1 failed, 1 passed" in text and "AssertionError: 0.03 > 0.02" in text
    assert "**failed (exit 1)**" in text and "**stopped at its limit (150 s)**" in text
    assert "**not run: out of time**" in text
    engine = text.split("## Engine")[1].split("##")[0]
    serving = text.split("## Serving")[1].split("##")[0]
    assert "No figures." in engine and "No figures." in serving
    assert not re.search(r"ms/step \|\n\| --- .*\n\|", engine)  # no table rows
