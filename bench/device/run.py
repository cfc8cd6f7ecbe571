"""The device run's steps, each bounded and its output kept: what `bench/device/run.sh` runs once
the carried wheels are installed (`--cpu`: the same steps on the CPU, small presets).

    OUT=DIR bash bench/device/run.sh          # a GPU machine: DIR/RESULTS.md, DIR/results.json, DIR/logs.txt
    OUT=DIR bash bench/device/run.sh --cpu    # the CPU, tiny and mid presets, under 3 minutes

1. the CUDA tests (`pytest -m cuda tests/cuda`, HIGGS_TEST_DEVICE=cuda);
2. `bench/engine.py` (batch 1: ms/step with CUDA graphs and without, TTFA with an uncached and a
   cached voice, transformers' generate beside it), `bench/serving.py` (audio-s/s and TTFA at 1 to
   64 streams, peak memory) and `bench/device/cold_start.py` (imports, load, capture, first audio),
   on the full-size random model in bf16; the copy bandwidth measured here gives the floor a
   decode step cannot beat (its bytes / the bandwidth);
3. RESULTS.md (bench/device/results.py): every figure with the command that produced it.

A step that fails or runs out of its time is reported as such and the run goes on; the whole run
keeps inside `--budget` seconds (the device gives one command 10 minutes)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.device.results import write_results  # noqa: E402


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    status: str = "not run"
    seconds: float = 0.0
    output: str = ""

    @property
    def command(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        argv = ["python" if a == sys.executable else a for a in self.argv]
        shown = " ".join(filter(None, [env, *argv])).replace(str(ROOT) + "/", "")
        return re.sub(r"\S*/higgs-device-[^/\s]+/", "", shown)  # the run's scratch folder


def plan(cpu: bool, scratch: Path) -> list[Step]:
    py = sys.executable
    device = "cpu" if cpu else "cuda"
    tests = Step("cuda tests", [py, "-m", "pytest", "-m", "cuda", "tests/cuda", "-q", "-p", "no:cacheprovider",
                                "--junitxml", str(scratch / "junit.xml")], 120 if cpu else 150,
                 {"HIGGS_TEST_DEVICE": device})
    if cpu:
        return [
            tests,
            Step("engine tiny", [py, "bench/engine.py", "--preset", "tiny", "--steps", "60", "--hf-steps", "20",
                                 "--json", str(scratch / "engine-tiny.json")], 60),
            Step("engine mid", [py, "bench/engine.py", "--preset", "mid", "--steps", "30", "--skip-hf",
                                "--json", str(scratch / "engine-mid.json")], 60),
            Step("serving tiny", [py, "bench/serving.py", "--preset", "tiny", "--streams", "1,4,8", "--steps", "40",
                                  "--skip-sequential", "--voice-cache", "on", "--json"], 60),
            Step("cold start tiny", [py, "bench/device/cold_start.py", "--preset", "tiny",
                                     "--json", str(scratch / "cold.json")], 60),
            Step("verify demo", [py, "bench/verify.py", "--asr", "demo", "--repeats", "1", "--texts", "one chunk",
                                 "--max-new-tokens", "60", "--json", str(scratch / "verify.json")], 60),
        ]
    return [
        tests,
        Step("engine full-size", [py, "bench/engine.py", "--preset", "full-size-random", "--steps", "300",
                                  "--hf-steps", "100", "--json", str(scratch / "engine-full.json")], 150),
        Step("serving full-size", [py, "bench/serving.py", "--preset", "full-size-random", "--streams",
                                   "1,8,16,32,64", "--steps", "200", "--skip-sequential", "--voice-cache", "on",
                                   "--json"], 170),
        Step("cold start full-size", [py, "bench/device/cold_start.py", "--preset", "full-size-random",
                                      "--json", str(scratch / "cold.json")], 130),
        Step("verify turbo", [py, "bench/verify.py", "--asr", "turbo", "--device", "cuda", "--repeats", "2",
                              "--json", str(scratch / "verify.json")], 60),
    ]


def run_step(step: Step, deadline: float, log) -> None:
    left = deadline - time.monotonic()
    if left < 20:
        step.status = "not run: out of time"
        return
    limit = min(step.timeout_s, left - 5)
    log.write(f"\n===== {step.name}: {step.command} (limit {limit:.0f} s)\n")
    log.flush()
    started = time.monotonic()
    try:
        done = subprocess.run(step.argv, cwd=ROOT, env={**os.environ, **step.env, "PYTHONUNBUFFERED": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=limit)
        step.output = done.stdout
        step.status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        step.output = out.decode(errors="replace") if isinstance(out, bytes) else out
        step.status = f"stopped at its limit ({limit:.0f} s)"
    step.seconds = time.monotonic() - started
    log.write(step.output)
    log.write(f"\n----- {step.name}: {step.status} in {step.seconds:.1f} s\n")
    log.flush()


def copy_bandwidth(device: str) -> float:
    """Bytes read and written per second by a large device-to-device copy (the best of 10)."""
    import torch

    n = (1 << 30) if device == "cuda" else (256 << 20)
    a = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(10):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        b.copy_(a)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n / best


def environment(cpu: bool) -> dict:
    import platform

    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "cpu_count": os.cpu_count(),
            "commit": _commit(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if not cpu and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version(),
                    driver=_nvidia_smi("driver_version"))
    else:
        info["device"] = f"cpu ({os.cpu_count()} cores)"
    info["copy_bandwidth_bytes_per_s"] = copy_bandwidth("cpu" if cpu else "cuda")
    return info


def _nvidia_smi(field_name: str) -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={field_name}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _commit() -> str:
    manifest = ROOT / "bench" / "device" / "wheels" / "MANIFEST.json"
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
    except OSError:
        pass
    if manifest.is_file():  # the device's copy of the tree has no .git: prepare.sh noted the commit
        return json.loads(manifest.read_text()).get("commit", "unknown")
    return "unknown"


def collect(steps: list[Step], scratch: Path) -> dict:
    """The figures each step left (JSON files, JSON lines, the tests' JUnit report)."""
    found: dict = {}
    for name in ("engine-full", "engine-tiny", "engine-mid", "cold", "verify"):
        path = scratch / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    for step in steps:
        if step.name.startswith("serving"):
            found["serving"] = [json.loads(line) for line in step.output.splitlines() if line.startswith("{")]
    junit = scratch / "junit.xml"
    if junit.is_file():
        found["tests"] = [_case(case) for case in ElementTree.parse(junit).iter("testcase")]
    return found


def _case(case) -> dict:
    outcome, message = "passed", ""
    for kind in ("failure", "error", "skipped"):
        node = case.find(kind)
        if node is not None:
            outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
            message = (node.get("message") or "").splitlines()[0][:200] if node.get("message") else ""
    return {"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
            "message": message}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the CPU, tiny and mid presets")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/device")))
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 510, --cpu 230)")
    parser.add_argument("--only", help="run only these steps (names, comma-separated)")
    args = parser.parse_args()
    deadline = time.monotonic() + (args.budget or (230 if args.cpu else 510))
    args.out.mkdir(parents=True, exist_ok=True)
    info = environment(args.cpu)
    with tempfile.TemporaryDirectory(prefix="higgs-device-") as folder, \
            open(args.out / "logs.txt", "a", encoding="utf-8") as log:
        scratch = Path(folder)
        steps = plan(args.cpu, scratch)
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            unknown = wanted - {s.name for s in steps}
            if unknown:
                parser.error(f"no step named {sorted(unknown)}: {[s.name for s in steps]}")
            steps = [s for s in steps if s.name in wanted]
        for step in steps:
            run_step(step, deadline, log)
        figures = collect(steps, scratch)
    results = {"environment": info,
               "steps": [{"name": s.name, "command": s.command, "status": s.status, "seconds": round(s.seconds, 1),
                          "timeout_s": s.timeout_s} for s in steps],
               "figures": figures}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    write_results(args.out / "RESULTS.md", results, cpu=args.cpu)
    print((args.out / "RESULTS.md").read_text())
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
