"""Slim the image's virtualenv (run inside the Dockerfile's build stage, after the installs).

    python slim_venv.py VENV [--dry-run] [--warm COMMAND]

Removes only what is proven unused, never guessed:
- a shared library that no kept ELF file links (DT_NEEDED) or names, and no Python file names
  (a library loaded by name with dlopen or ctypes is named by its loader: cuDNN's engine
  libraries, NVRTC's builtins, CUPTI's helpers stay), checked again until nothing changes; the
  Python extension modules and torch's own libraries are the roots;
- C headers, static libraries and CMake files (nothing compiles in the image);
- byte-code of modules the worker never imports: every `__pycache__` goes, then `--warm` runs
  the worker's cold path (imports, a demo synthesis) with byte-code on, so exactly the modules a
  start imports are compiled (the cold start keeps its speed, the image does not carry the rest).
Prints what it removed and the bytes saved, as JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ELF = b"\x7fELF"
SONAME = re.compile(rb"lib[A-Za-z0-9_+.-]*\.so(?:\.[0-9]+)*")
REMOVABLE_DIRS = ("include", "share/cmake")
REMOVABLE_SUFFIXES = (".a", ".h", ".hpp", ".cuh")


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF
    except OSError:
        return False


def library_names(path: Path) -> set[str]:
    """Every library file name an ELF file mentions: its DT_NEEDED entries are among them, and
    so is any name it passes to dlopen."""
    return {m.decode() for m in SONAME.findall(path.read_bytes())}


# A catalog of every CUDA library cuda-pathfinder could locate is not a use: what torch and
# cuda-bindings load through it is named in their own code (cupti, nvrtc, nvJitLink, ...).
CATALOGS = ("cuda/pathfinder/_dynamic_libs/descriptor_catalog.py",)


def shared_libraries(site: Path) -> dict[Path, str]:
    """Shared libraries shipped as data (not extension modules): torch/lib and nvidia/*/lib.
    Only `lib*` files: plugins such as nvshmem's transports are loaded by names built at run
    time, which no scan can see, so they always stay."""
    found = {}
    for folder in [site / "torch" / "lib", *site.glob("nvidia/*/lib")]:
        for path in folder.glob("lib*.so*"):
            if path.is_file() and not path.is_symlink() and is_elf(path):
                found[path] = path.name
    return found


def unused_libraries(site: Path) -> list[Path]:
    """Libraries no kept ELF file mentions, found by elimination: removing one can free others."""
    libraries = shared_libraries(site)
    roots = [p for p in site.rglob("*.so*") if p.is_file() and p not in libraries and is_elf(p)]
    roots += [p for p in libraries if p.parent.name == "lib" and p.parent.parent.name == "torch"]
    kept = set(roots)
    # Python code loads libraries by name too (ctypes, cuda-pathfinder): its names count
    sources = [p for p in site.rglob("*.py") if not any(p.match(c) for c in CATALOGS)]
    mentioned: set[str] = set().union(*(library_names(p) for p in sources))
    frontier = list(roots)
    while frontier:
        names = set().union(*(library_names(p) for p in frontier))
        mentioned |= names
        frontier = [p for p, name in libraries.items() if p not in kept and _mentioned(name, mentioned)]
        kept.update(frontier)
    return sorted(p for p in libraries if p not in kept)


def _mentioned(name: str, names: set[str]) -> bool:
    """`libnvrtc-builtins.so.13.0` is mentioned by `libnvrtc-builtins.so.13.0` or by a shorter
    form of it (`libnvrtc-builtins.so`, `libnvrtc-builtins.so.13`): loaders name the stem."""
    stem = name.split(".so", 1)[0] + ".so"
    return any(candidate == name or (candidate.startswith(stem) and name.startswith(candidate))
               for candidate in names)


def build_files(site: Path) -> list[Path]:
    paths: list[Path] = []
    for package in [site / "torch", *site.glob("nvidia/*"), *site.glob("cuda*")]:
        for folder in REMOVABLE_DIRS:
            if (package / folder).is_dir():
                paths.append(package / folder)
        paths += [p for p in package.rglob("*") if p.suffix in REMOVABLE_SUFFIXES and p.is_file()
                  and not any(p.is_relative_to(package / d) for d in REMOVABLE_DIRS)]
    return paths


def size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def remove(paths: list[Path], what: str, dry_run: bool) -> int:
    total = sum(size(p) for p in paths)
    print(json.dumps({"removed": what, "files": len(paths), "bytes": total,
                      "examples": [p.name for p in paths[:12]]}), flush=True)
    if not dry_run:
        for path in paths:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return total


def site_packages(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--warm", help="a shell command whose imports get byte-code (the worker's cold path)")
    args = parser.parse_args()
    site = site_packages(args.venv)
    saved = remove(unused_libraries(site), "libraries nothing links or loads by name", args.dry_run)
    saved += remove(build_files(site), "headers, static libraries, CMake files", args.dry_run)
    if args.warm:
        caches = [p for p in args.venv.rglob("__pycache__") if p.is_dir()]
        saved += remove(caches, "byte-code (then the cold path's modules are compiled again)", args.dry_run)
        if not args.dry_run:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            subprocess.run(["sh", "-c", args.warm], check=True, env=env)
            compiled = sum(size(p) for p in args.venv.rglob("__pycache__") if p.is_dir())
            saved -= compiled
            print(json.dumps({"compiled": "the cold path's byte-code", "bytes": compiled}), flush=True)
    print(json.dumps({"saved_bytes": saved}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
