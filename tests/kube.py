"""The Kubernetes manifests as kubectl renders them, with every kubectl the tests have: the one on
PATH, and Debian's kubectl 1.20 (bookworm's kubernetes-client, whose embedded kustomize is the
oldest the manifests must stay within), unpacked from its package into a cache directory."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "higgs-tts-tests"
VALIDATORS = ROOT / "tests" / "k8s" / "crd-validators"


def debian_kubectl() -> Path:
    """bookworm's kubectl 1.20, from its package (apt-get download: no root, nothing installed)."""
    home = CACHE / "kubernetes-client"
    binary = home / "usr" / "bin" / "kubectl"
    if binary.exists():
        return binary
    home.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is missing: the tests render the manifests with Debian's kubectl 1.20")
    download = ["apt-get", "download", "kubernetes-client"]
    if subprocess.run(download, cwd=home, capture_output=True, timeout=300).returncode != 0:
        if os.geteuid() == 0:  # a machine whose package lists were never fetched
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)
        subprocess.run(download, cwd=home, check=True, capture_output=True, timeout=300)
    (package,) = glob.glob(str(home / "kubernetes-client_*.deb"))
    subprocess.run(["dpkg-deb", "-x", package, str(home)], check=True, timeout=120)
    return binary


def kubectls() -> dict[str, str]:
    """version -> kubectl binary: Debian's 1.20 and the one on PATH (when there is one)."""
    found = {}
    for binary in filter(None, [shutil.which("kubectl"), str(debian_kubectl())]):
        out = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        info = json.loads(out)["clientVersion"]
        found[f"{info['major']}.{info['minor']}"] = binary
    return found


def render(overlay: str, kubectl: str) -> list[dict]:
    """The overlay's objects, as `kubectl kustomize` renders them."""
    done = subprocess.run([kubectl, "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{kubectl} kustomize {overlay} failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def crd_validator() -> Path:
    """tests/k8s/crd-validators with its node_modules (npm ci from the committed lock, once)."""
    home = CACHE / "crd-validators"
    lock = (VALIDATORS / "package-lock.json").read_bytes()
    if not (home / "node_modules").exists() or (home / "package-lock.json").read_bytes() != lock:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise RuntimeError("node and npm are missing: apt-get install nodejs npm (the CRD validators)")
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "validate.mjs"):
            shutil.copy(VALIDATORS / name, home / name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home, check=True,
                       timeout=300, capture_output=True)
    shutil.copy(VALIDATORS / "validate.mjs", home / "validate.mjs")
    return home


def validate_custom(objects: list[dict]) -> list[dict]:
    """One result per object from the kubernetes-models validators ({kind, name, ok, error})."""
    home = crd_validator()
    done = subprocess.run(["node", "validate.mjs"], cwd=home, input=json.dumps(objects), capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"validate.mjs failed: {done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines()]
