# The radiogenomics image: Ray (head, workers and Serve replicas all run it), the app's code and
# its pinned dependencies. CPU-only torch from PyTorch's CPU index (PyPI's default is a CUDA build).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY radiogenomics radiogenomics
COPY services services
COPY tune tune
COPY protos protos
COPY deploy deploy
RUN pip install . && useradd --create-home --uid 1000 ray && mkdir -p /data && chown ray /data
USER ray

# 9000 gRPC (Serve's proxy; behind the TLS proxy), 8080 Prometheus metrics, 6379 Ray GCS,
# 8265 Ray dashboard / job and Serve REST API, 10001 Ray client, 8000 Serve HTTP (unused).
EXPOSE 9000 8080 6379 8265 10001 8000
CMD ["ray", "start", "--head", "--block"]
