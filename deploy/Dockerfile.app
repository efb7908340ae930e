# The light image: the indexer and the query service (no torch).
#   docker build -f deploy/Dockerfile.app -t fashionrag-app .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Optional wheelhouse (deploy/wheels); PIP_NO_INDEX=1 installs from it alone (offline builds).
ARG PIP_NO_INDEX=0
ENV PIP_NO_INDEX=${PIP_NO_INDEX} PIP_FIND_LINKS=/wheels PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY deploy/wheels /wheels
COPY pyproject.toml deploy/requirements.py /src/
RUN mkdir /src/deploy && mv /src/requirements.py /src/deploy/ \
    && python3 -m venv /opt/venv \
    && python3 /src/deploy/requirements.py indexer query chroma-client > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt "grpcio-tools==1.85.1" "setuptools>=69"
COPY README.md /src/
COPY protos /src/protos
COPY fashionrag /src/fashionrag
COPY embedder_service /src/embedder_service
COPY indexer_service /src/indexer_service
COPY query_service /src/query_service
WORKDIR /src
RUN /opt/venv/bin/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. \
        --grpc_python_out=. protos/fashionrag/v1/embedder.proto protos/fashionrag/v1/query.proto \
    && /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall -y grpcio-tools

FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 fashionrag
COPY --from=build /opt/venv /opt/venv
# No bytecode written at run time (pip compiled it at install): the root file system is read-only.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface
RUN mkdir -p /data/images /cache && chown -R fashionrag /data /cache
USER fashionrag
WORKDIR /home/fashionrag
CMD ["python", "-m", "query_service", "serve", "--host", "0.0.0.0"]
