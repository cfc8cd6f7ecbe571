"""How big the image's Python packages are: installs exactly runtime.lock (and this project)
into a throwaway directory, the way the Dockerfile does, and prints the total and the ten
largest packages. It downloads the CUDA wheels (several GB): run it by hand, not in CI.

    python tools/image_size.py [--lock runtime.lock] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 5 * 1000**3  # the image must stay under 5 GB uncompressed
BASE_IMAGE = 125 * 1000**2  # python:3.11-slim, uncompressed (docker image ls), for the estimate


def installed_sizes(target: Path) -> dict[str, int]:
    """Bytes per distribution, from each dist-info's RECORD (files outside any RECORD are
    counted under "(unrecorded)")."""
    owned: dict[Path, str] = {}
    for record in target.glob("*.dist-info/RECORD"):
        name = record.parent.name.split("-")[0].lower().replace("_", "-")
        for line in record.read_text(encoding="utf-8").splitlines():
            path = line.rsplit(",", 2)[0]
            if path:
                owned[(target / path).resolve()] = name
    sizes: dict[str, int] = defaultdict(int)
    for path in target.rglob("*"):
        if path.is_file() and not path.is_symlink():
            sizes[owned.get(path.resolve(), "(unrecorded)")] += path.stat().st_size
    return dict(sizes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "runtime.lock")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    parser.add_argument("--keep", type=Path, help="install here and keep it (default: a temp dir)")
    args = parser.parse_args()
    target = args.keep or Path(tempfile.mkdtemp(prefix="higgs-image-size-"))
    started = time.monotonic()
    try:
        for what in (["-r", str(args.lock)], [str(ROOT)]):
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--no-deps",
                 "--index-url", args.index_url, "--target", str(target), *what],
                check=True,
            )
        sizes = installed_sizes(target)
    finally:
        if not args.keep:
            shutil.rmtree(target, ignore_errors=True)
    total = sum(sizes.values())
    print(f"installed {len(sizes)} packages from {args.lock.name} in {time.monotonic() - started:.0f}s")
    print(f"site-packages total: {total / 1000**3:.2f} GB")
    print(f"image estimate (+ python:3.11-slim ~{BASE_IMAGE / 1000**2:.0f} MB): "
          f"{(total + BASE_IMAGE) / 1000**3:.2f} GB of the {BUDGET / 1000**3:.0f} GB budget")
    print("largest packages:")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {size / 1000**2:9.1f} MB  {name}")
    return 0 if total + BASE_IMAGE < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
