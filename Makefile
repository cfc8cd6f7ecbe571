# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints-test.txt
RUN_TEXT ?= Hello! This is Higgs Audio speaking, streamed as it is generated.

.PHONY: run test install install-test browser clean protos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml constraints-test.txt | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints-test.txt | $(PY)
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## run: synthesise a sentence into out/hello.wav with the real weights (downloaded into
## MODEL_PATH when missing; the demo bundle only when the hub cannot be reached)
run: install
	MODEL_PATH=$${MODEL_PATH:-$(CURDIR)/.cache/higgs_audio} $(VENV)/bin/higgs-tts quickstart --text "$(RUN_TEXT)" --voice sample_us_female --seed 7 --out out/hello.wav

## test: the whole suite, as CI runs it (the playground test needs Debian's chromium: installed
## here when missing and run as root, as CI runs)
test: install-test browser
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; } || \
	  echo "note: chromium is missing (apt-get install chromium): the playground test will fail"

## protos: regenerate higgs_tts/ (the gRPC stubs) from protos/
protos: install-test
	$(PY) protos/generate.py .

clean:
	rm -rf $(VENV) out .pytest_cache
