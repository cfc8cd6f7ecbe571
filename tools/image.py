"""Build the container image users deploy, and check it as RunPod runs it.

    python tools/image.py build [--tag localhost/higgs-tts:latest]   # make image
    python tools/image.py check [--tag localhost/higgs-tts:latest]   # make image-check

`build` uses docker when a daemon answers, else buildah (Debian's package: `--isolation chroot`,
docker format so HEALTHCHECK is kept, the machine's CA bundle mounted read-only for pip). When
the Dockerfile's base image cannot be pulled (no registry), an equivalent is built from Debian's
packages first (debootstrap bookworm minbase + python3.11 in a virtualenv at /usr/local, pip,
ca-certificates) and tagged under the base's own name, so the Dockerfile stays the one users
build. The image lands as `localhost/higgs-tts:latest` in the builder's default storage.

`check` runs the image as RunPod would (its own CMD and environment, a demo bundle mounted at
MODEL_PATH, everything on 127.0.0.1) and fails unless the health check passes, /runsync returns
audio, a streaming job streams, and SIGTERM drains a job in flight and exits 0; then it prints
the cold start, the image size, each layer's size and the ten largest packages, fails above
5.0 GB, and ends with `image size: N.NN GB`. The pieces that need no image run in the tests
(tests/integration/test_image_tool.py)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TAG = "localhost/higgs-tts:latest"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# the python:3.11-slim equivalent: Debian's Python 3.11, its venv and pip, and the CA bundle
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "python3-lib2to3", "python3-pip-whl",
                 "python3-setuptools-whl", "ca-certificates")
# what a slim base leaves out: package caches and lists, documentation, manuals
BASE_TRIM = ("var/cache/apt/archives", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
             "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info")
LIMIT_GB = 5.0


def log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def sh(*command: str, check: bool = True, capture: bool = False, timeout: float | None = None,
       input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=capture, timeout=timeout, input=input)


# -- which builder, which base ---------------------------------------------------------------------


def choose_builder(preferred: str = "auto") -> str:
    if preferred != "auto":
        return preferred
    if shutil.which("docker") and sh("docker", "info", check=False, capture=True, timeout=20).returncode == 0:
        return "docker"
    if shutil.which("buildah"):
        return "buildah"
    raise SystemExit("no image builder: start a docker daemon, or install buildah (apt-get install buildah)")


def base_image(dockerfile: Path) -> str:
    """The first stage's base image, as a fully qualified name (Docker Hub's short names)."""
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.I)
        if match:
            return qualified(match.group(1))
    raise SystemExit(f"{dockerfile} has no FROM")


def qualified(name: str) -> str:
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


@dataclass(frozen=True)
class Bootstrap:
    """The plan for a base image made from Debian's packages (a pure value: the tests read it)."""

    rootfs: Path
    image: str
    release: str = "bookworm"
    mirror: str = DEBIAN_MIRROR

    def commands(self) -> list[list[str]]:
        root = str(self.rootfs)
        return [
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", self.release, root,
             self.mirror],
            # a virtualenv at /usr/local: python, pip and installed scripts in /usr/local/bin and
            # packages in /usr/local/lib/python3.11/site-packages, as in python:3.11-slim (Debian's
            # own Python refuses pip installs: PEP 668)
            ["chroot", root, "python3.11", "-m", "venv", "/usr/local"],
            ["chroot", root, "/usr/local/bin/python", "-m", "pip", "--version"],
            ["rm", "-rf", *(f"{root}/{path}" for path in BASE_TRIM)],
        ]

    def config(self) -> list[str]:
        """buildah config options: the environment python:3.11-slim sets."""
        return ["--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "--env", "LANG=C.UTF-8",
                "--cmd", "python3", "--label", f"org.higgs-tts.bootstrapped-from=debian-{self.release}"]


def ensure_base(builder: str, image: str) -> None:
    """The base image in local storage: there already, pulled, or bootstrapped (said so)."""
    if builder == "docker":
        return  # docker pulls it during the build, as for any user
    if sh("buildah", "inspect", "--type", "image", image, check=False, capture=True).returncode == 0:
        log(f"base {image}: in local storage")
        return
    if sh("buildah", "pull", "--quiet", image, check=False, capture=True, timeout=120).returncode == 0:
        log(f"base {image}: pulled")
        return
    log(f"base {image}: no registry answered; building an equivalent from Debian's packages "
        f"(debootstrap bookworm minbase + {', '.join(BASE_PACKAGES)}); the Dockerfile is unchanged")
    with tempfile.TemporaryDirectory(prefix="higgs-base-") as tmp:
        plan = Bootstrap(Path(tmp) / "rootfs", image)
        for command in plan.commands():
            sh(*command, capture=command[0] == "debootstrap")
        container = sh("buildah", "from", "scratch", capture=True).stdout.decode().strip()
        try:
            mount = sh("buildah", "mount", container, capture=True).stdout.decode().strip()
            sh("cp", "-a", f"{plan.rootfs}/.", mount)
            sh("buildah", "umount", container)
            sh("buildah", "config", *plan.config(), container)
            sh("buildah", "commit", "--quiet", "--format", "docker", container, image)
        finally:
            sh("buildah", "rm", container, check=False, capture=True)


def build_command(builder: str, tag: str, dockerfile: Path, context: Path) -> list[str]:
    if builder == "docker":
        return ["docker", "build", "--tag", tag, "--file", str(dockerfile), str(context)]
    return ["buildah", "bud", "--isolation", "chroot", "--format", "docker", "--layers", "--pull=never",
            "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "--tag", tag, "--file", str(dockerfile), str(context)]


def cmd_build(args: argparse.Namespace) -> int:
    builder = choose_builder(args.builder)
    dockerfile = ROOT / "Dockerfile"
    log(f"builder: {builder}")
    ensure_base(builder, base_image(dockerfile))
    sh(*build_command(builder, args.tag, dockerfile, ROOT))
    log(f"built {args.tag}")
    return 0


def main() -> int:
    from tools.image_check import add_check_command

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the image (make image)")
    build.add_argument("--tag", default=TAG)
    build.add_argument("--builder", choices=["auto", "docker", "buildah"], default="auto")
    build.set_defaults(handler=cmd_build)
    add_check_command(commands, TAG)
    args = parser.parse_args()
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
