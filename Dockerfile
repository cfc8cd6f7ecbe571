# The RunPod Serverless worker. Weights are never in the image: they live on the network volume
# at MODEL_PATH. Build and check: `make image` and `make image-check` (tools/image.py: docker, or
# buildah without a daemon); or plainly `docker build -t higgs-tts .`.

# -- build: the virtualenv the worker runs in, installed and slimmed ---------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Runtime packages only, exactly as locked: PyPI's CUDA build of torch and its CUDA libraries,
# without triton (nothing compiles kernels at run time) and without test tools or compilers.
# soundfile's wheel carries libsndfile, so nothing comes from apt.
COPY runtime.lock .
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-deps --no-compile -r runtime.lock

COPY pyproject.toml README.md ./
COPY core core
COPY adapters adapters
COPY boson_multimodal boson_multimodal
COPY app app
COPY higgs_tts higgs_tts
COPY integrations integrations
RUN /opt/venv/bin/pip install --no-deps --no-compile . && /opt/venv/bin/higgs-tts --help > /dev/null

# Only what is proven unused goes (tools/slim_venv.py says how it proves it): libraries nothing
# links or names, headers and static libraries, and the byte-code of modules a start never
# imports. The cold path (a demo model written, loaded and run; the servers imported) is run
# once here so that exactly its modules are byte-compiled.
COPY tools/slim_venv.py /tmp/slim_venv.py
RUN /opt/venv/bin/python /tmp/slim_venv.py /opt/venv --warm "cd /tmp \
      && /opt/venv/bin/higgs-tts demo-model /tmp/demo > /dev/null \
      && HIGGS_DEVICE=cpu HIGGS_STORE=none MODEL_PATH=/tmp/demo /opt/venv/bin/higgs-tts synth --text 'Warm.' \
         --seed 1 --out /tmp/warm.wav > /dev/null \
      && /opt/venv/bin/python -c 'import app.runpod_worker, app.http_api, app.grpc_api, runpod.serverless, \
         runpod.serverless.modules.rp_scale, adapters.s3.object_store, adapters.otel.tracer' \
      && rm -rf /tmp/demo /tmp/warm.wav"

# Every requirement met but one, on purpose: triton (torch's compiler backend; nothing here
# compiles kernels, the decode step is replayed from CUDA graphs). Any other line fails the build.
RUN /opt/venv/bin/pip check > /tmp/pip-check.txt || true; \
    grep -vx "torch [0-9.]* requires triton, which is not installed." /tmp/pip-check.txt > /tmp/unexpected.txt || true; \
    cat /tmp/unexpected.txt; test ! -s /tmp/unexpected.txt

# -- the worker ------------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_PATH=/runpod-volume/higgs_audio \
    HEALTH_PORT=8081 \
    HEALTH_HOST=0.0.0.0 \
    RUNPOD_LOG_LEVEL=INFO

COPY --from=build /opt/venv /opt/venv
WORKDIR /app

# Liveness only (the model may still be loading); /ready says when jobs are served fast.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEALTH_PORT', '8081'), timeout=4)"]

CMD ["higgs-tts", "serve", "runpod"]
