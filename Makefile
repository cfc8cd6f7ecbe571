# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the image's lock constrains the tests too: they run the versions the image ships (torch: the CPU
# build of the same release, from constraints-test.txt)
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints-test.txt -c runtime.lock
RUN_TEXT ?= Hello! This is Higgs Audio speaking, streamed as it is generated.

.PHONY: run test install install-test system-packages browser clean docs protos image image-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml constraints-test.txt runtime.lock | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints-test.txt runtime.lock | $(PY)
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## run: synthesise a sentence into out/hello.wav with the real weights (downloaded into
## MODEL_PATH when missing; the demo bundle only when the hub cannot be reached)
run: install
	MODEL_PATH=$${MODEL_PATH:-$(CURDIR)/.cache/higgs_audio} $(VENV)/bin/higgs-tts quickstart --text "$(RUN_TEXT)" --voice sample_us_female --seed 7 --out out/hello.wav

## test: the whole suite, as CI runs it (Debian's chromium for the playground, nginx for the
## replicas behind a proxy, kubectl for the manifests, node for the CRD validators: installed here
## when missing and run as root, as CI runs)
test: install-test system-packages
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

# command:package pairs; nginx is looked for in /usr/sbin too (not on a user's PATH)
SYSTEM_PACKAGES := chromium:chromium nginx:nginx kubectl:kubernetes-client node:nodejs npm:npm

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null || test -x /usr/sbin/$$cmd || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "note: missing$$missing (apt-get install$$missing): the tests that need them will fail"; fi; fi

browser: system-packages

## image: build the container image as localhost/higgs-tts:latest (docker, or buildah without a
## daemon: apt-get install buildah debootstrap; a base image no registry serves is bootstrapped)
image: install
	$(PY) tools/image.py build

## image-check: run the image as RunPod would (health check, /runsync, streaming, SIGTERM drain),
## print its cold start, size, layers and largest packages; fails above 5.0 GB
image-check: install
	$(PY) tools/image.py check

## docs: rewrite docs/cli.md from the parser (a test compares them)
docs: install-test
	$(PY) -m app.cli_reference > docs/cli.md

## protos: regenerate higgs_tts/ (the gRPC stubs) from protos/
protos: install-test
	$(PY) protos/generate.py .

clean:
	rm -rf $(VENV) out .pytest_cache
