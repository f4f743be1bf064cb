# aitrace processors (`aitrace worker`, `aitrace setup`, every CLI command) for docker-compose.yml.
# Stage 1 builds a wheel from the source tree; stage 2 installs only that wheel, so what runs
# is the installed package (the source folders are mapped into `aitrace.<folder>` by
# pyproject.toml and would shadow nothing here). It installs the worker extra (Faust, Numba,
# SciPy, Elasticsearch: `pip install aitrace` alone is the producer library); the embedded
# extra (Tansu, osmem-server) is not installed: production talks to Kafka and Elasticsearch.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aitrace ./aitrace
COPY producers ./producers
COPY schemas ./schemas
COPY processors ./processors
COPY detect ./detect
COPY sinks ./sinks
COPY infra ./infra
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN wheel="$(ls /wheels/aitrace-*.whl)" && pip install "${wheel}[worker]" && rm -rf /wheels \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin aitrace
USER aitrace
WORKDIR /home/aitrace
# Worker state (Faust tables, Numba's compiled kernels) lives in the user's home, not the image.
ENV AITRACE_STATE_DIR=/home/aitrace/.aitrace \
    AITRACE_SPOOL_DIR=/home/aitrace/.aitrace/spool \
    NUMBA_CACHE_DIR=/home/aitrace/.cache/numba
ENTRYPOINT ["aitrace"]
CMD ["worker"]
