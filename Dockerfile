# Run Bridge: the bridge (and, for local stacks, the ADF emulator) in one slim image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY bridge ./bridge
COPY contracts ./contracts
COPY emulators ./emulators
COPY devenv ./devenv
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c requirements.lock ".[emulators]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RUNBRIDGE_HEALTH_FILE=/tmp/runbridge.alive
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin runbridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/* && rm -rf /wheels
USER runbridge
WORKDIR /home/runbridge
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["runbridge", "health", "--max-age", "120"]
ENTRYPOINT ["runbridge"]
CMD ["run"]
