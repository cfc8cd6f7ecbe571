# Completed by the RunPod worker work: slim base, CUDA torch, runtime dependencies only.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY adapters adapters
COPY boson_multimodal boson_multimodal
COPY app app
COPY higgs_tts higgs_tts
RUN pip install --no-cache-dir .
ENV MODEL_PATH=/runpod-volume/higgs_audio
CMD ["higgs-tts", "voices"]
