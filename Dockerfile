# The RunPod Serverless worker. Weights are never in the image: they live on the network volume
# at MODEL_PATH. Build: docker build -t higgs-tts . ; size check: python tools/image_size.py
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_PATH=/runpod-volume/higgs_audio \
    HEALTH_PORT=8081 \
    HEALTH_HOST=0.0.0.0 \
    RUNPOD_LOG_LEVEL=INFO

WORKDIR /app

# Runtime packages only, exactly as locked: PyPI's CUDA build of torch and its CUDA libraries,
# without triton (nothing compiles kernels at run time) and without test tools or compilers.
# soundfile's wheel carries libsndfile, so nothing comes from apt.
COPY runtime.lock .
RUN pip install --no-deps -r runtime.lock

COPY pyproject.toml README.md ./
COPY core core
COPY adapters adapters
COPY boson_multimodal boson_multimodal
COPY app app
COPY higgs_tts higgs_tts
RUN pip install --no-deps . && higgs-tts --help > /dev/null

# Liveness only (the model may still be loading); /ready says when jobs are served fast.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEALTH_PORT', '8081'), timeout=4)"

CMD ["higgs-tts", "serve", "runpod"]
