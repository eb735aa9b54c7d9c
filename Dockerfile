# dspy-bridge sidecar image: non-root, health-checked, sqlite store on a volume by default.
# Build:  docker build -t dspy-bridge .
# Run:    docker run -p 50051:50051 -v bridge-data:/data dspy-bridge

FROM python:3.11-slim AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY clients/python clients/python
COPY proto proto
COPY server server
# Generate the protobuf code with a throwaway grpcio-tools, then install server + client
# (non-editable, no dev tools) into /opt/venv from the lock file.
RUN uv venv /opt/gen && uv pip install --python /opt/gen/bin/python grpcio-tools==1.85.1 \
    && /opt/gen/bin/python proto/generate.py --no-stubs \
    && uv sync --locked --no-dev --no-editable \
    && rm -rf /opt/gen

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 bridge && mkdir /data && chown bridge /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    DSPY_BRIDGE_HOST=0.0.0.0 \
    DSPY_BRIDGE_PORT=50051 \
    DSPY_BRIDGE_STORE=sqlite:////data/bridge.db \
    DSPY_BRIDGE_LOG_FORMAT=json \
    DSPY_BRIDGE_METRICS_PORT=9090
USER bridge
VOLUME ["/data"]
EXPOSE 50051 9090
# No --target: `health` reads DSPY_BRIDGE_PORT (and the TLS settings), so a changed port is
# still the one probed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dspy-bridge", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dspy-bridge", "serve"]
