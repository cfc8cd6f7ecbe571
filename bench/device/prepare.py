"""Gathers into bench/device/wheels/ (git-ignored, carried to the GPU machine) the wheels that
machine's image lacks: CPython 3.12, manylinux x86-64, no dependencies resolved by pip (the
choice is made here, from runtime.lock and bench/device/device-image.txt), at most 60 MiB.

- Never carried: torch, triton and the CUDA libraries (the machine's own CUDA build is the point).
- Always carried, at runtime.lock's version: what the model code and the benchmarks run on
  (transformers, tokenizers, huggingface-hub, safetensors, soundfile, soxr) and everything they
  require, except the base libraries the image's torch stack is built with (numpy, packaging,
  typing-extensions): the image keeps its own of those.
- Then the rest of runtime.lock that the image does not hold (the service's HTTP, gRPC, RunPod,
  S3 and telemetry packages), smallest first while the budget lasts; what does not fit or has no
  wheel for that platform is listed in MANIFEST.json, never silently dropped.
- The project's own wheel.

    bash bench/device/prepare.sh              # = python bench/device/prepare.py"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / "bench" / "device" / "wheels"
BUDGET = 60 << 20
CARRY_LIMIT = 64 << 20  # the device tool's limit on the working tree and what it carries, together
ESSENTIAL = ("transformers", "tokenizers", "huggingface-hub", "safetensors", "soundfile", "soxr", "jiwer")
IMAGE_KEEPS = {"numpy", "packaging", "typing-extensions", "setuptools", "pip"}
NEVER = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """name -> version ('' where the file gives none): runtime.lock, device-image.txt."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def closure(names: tuple[str, ...], lock: dict[str, str], python: str) -> set[str]:
    """`names` and every lock package they require on Linux x86-64 under `python` (from the
    installed metadata: this project's environment holds the lock's versions)."""
    env = {"python_version": python, "python_full_version": python + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    seen: set[str] = set()
    todo = [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen or name not in lock:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(env):
                todo.append(canonical(requirement.name))
    return seen


def choose(lock: dict[str, str], image: dict[str, str], python: str) -> tuple[list[str], list[str]]:
    """(essential, optional) package names to carry (see the module docstring)."""
    essential = sorted(n for n in closure(ESSENTIAL, lock, python) if not NEVER.match(n) and n not in IMAGE_KEEPS)
    optional = sorted(n for n in lock if n not in essential and n not in image and not NEVER.match(n)
                      and n not in IMAGE_KEEPS)
    return essential, optional


def download(names: list[str], lock: dict[str, str], python: str, dest: Path) -> list[str]:
    """Downloads each wheel; returns the names with no wheel for the platform."""
    base = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
            "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        base += ["--platform", platform]
    missing = []
    for name in names:
        done = subprocess.run([*base, f"{name}=={lock[name]}"], capture_output=True, text=True)
        if done.returncode:
            missing.append(name)
    return missing


def wheel_of(name: str, dest: Path) -> Path | None:
    stem = canonical(name).replace("-", "_")
    return next((p for p in dest.glob("*.whl") if canonical(p.name.split("-")[0]).replace("-", "_") == stem), None)


def fit(optional: list[str], dest: Path, budget: int) -> list[str]:
    """Keeps the optional wheels, smallest first, while the total stays within `budget`;
    deletes and returns the rest."""
    used = sum(p.stat().st_size for p in dest.glob("*.whl"))
    for name in optional:
        wheel = wheel_of(name, dest)
        if wheel is not None:
            used -= wheel.stat().st_size
    dropped = []
    for name in sorted(optional, key=lambda n: (w := wheel_of(n, dest)) is None or w.stat().st_size):
        wheel = wheel_of(name, dest)
        if wheel is None:
            continue
        if used + wheel.stat().st_size <= budget:
            used += wheel.stat().st_size
        else:
            wheel.unlink()
            dropped.append(name)
    return dropped


def project_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dest), str(ROOT)], check=True)
    return next(dest.glob("higgs_tts-*.whl"))


def tree_bytes() -> int:
    """What else travels to the machine: the tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True)
    files = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    return sum(f.stat().st_size for f in files if f.is_file())


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "") if done.returncode == 0 else "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=WHEELS)
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--budget-mib", type=float,
                        help="default: 60, less when the working tree and the wheels would pass 64 MiB together")
    args = parser.parse_args()
    budget = int(args.budget_mib * 2**20) if args.budget_mib else min(BUDGET, CARRY_LIMIT - tree_bytes() - (2 << 20))
    lock, image = read_pins(ROOT / "runtime.lock"), read_pins(ROOT / "bench" / "device" / "device-image.txt")
    essential, optional = choose(lock, image, args.python_version)
    args.dest.mkdir(parents=True, exist_ok=True)
    for old in args.dest.glob("*.whl"):
        old.unlink()
    missing = download(essential + optional, lock, args.python_version, args.dest)
    if any(n in missing for n in essential):
        print(f"no wheel for {[n for n in essential if n in missing]}: the GPU run cannot install", file=sys.stderr)
        return 1
    own = project_wheel(args.dest)
    dropped = fit(optional, args.dest, budget)
    wheels = sorted(args.dest.glob("*.whl"))
    total = sum(p.stat().st_size for p in wheels)
    manifest = {"commit": commit(), "python": args.python_version, "bytes": total, "project": own.name,
                "essential": essential, "carried": [p.name for p in wheels],
                "over_budget": dropped, "no_wheel": missing}
    (args.dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.dest} (budget {budget / 2**20:.1f} MiB); "
          f"over the budget: {dropped or 'none'}; no wheel for this platform: {missing or 'none'}")
    if total > budget:
        print("the essential wheels alone are over the budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
