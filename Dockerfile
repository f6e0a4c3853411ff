# One image for every Python service of docker-compose.yml (api, workers, beat, model-server).
#   docker build -t dataengine .                                   CPU torch (api, workers, beat)
#   docker build -t dataengine-gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# The frontend is built in a Node stage and served by the API from /app/frontend/dist.

FROM node:20-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATAENGINE_HOME=/data DATAENGINE_FRONTEND_DIST=/app/frontend/dist
WORKDIR /app
# torch first, from the index that matches the target (CPU or CUDA); a plain requirement would
# pull the multi-GB CUDA build into every image.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md alembic.ini ./
COPY model_server/ model_server/
COPY backend/ backend/
COPY migrations/ migrations/
# Editable: alembic.ini and migrations/ are found next to the code (backend/core/migrations.py).
RUN pip install -e . && useradd --create-home --uid 1000 dataengine && mkdir -p /data && chown dataengine /data
COPY --from=frontend /src/frontend/dist /app/frontend/dist
USER dataengine
EXPOSE 8000 8001
CMD ["uvicorn", "--factory", "backend.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
