#!/usr/bin/env bash
# Gathers the wheels the GPU machine lacks into bench/device/wheels/ (git-ignored), where pip
# reaches a registry: see bench/device/prepare.py. Then carry bench/device/wheels to the GPU
# machine and run `OUT=DIR bash bench/device/run.sh` there.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" bench/device/prepare.py "$@"
