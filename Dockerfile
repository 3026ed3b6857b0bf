# One image for every Casemesh service; the command picks the service:
#   docker run casemesh:local casemesh_tickets serve     (ENTRYPOINT is `python -m`)
# Kubernetes sets the same as container `args` (deploy/k8s), Compose as `command`.

# Build stage: generate code from proto/ and install the workspace into /app/.venv
# (no dev tools, no editable installs: the virtualenv is self-contained).
FROM python:3.11.14-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN pip install --no-cache-dir uv==0.13.9 grpcio-tools==1.85.1 mypy-protobuf==5.1.0
WORKDIR /app
# Third-party dependencies first (their own layer, reused while uv.lock stays the same).
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --all-packages --no-dev --no-install-workspace
COPY proto ./proto
COPY scripts ./scripts
COPY libs ./libs
COPY services ./services
COPY clients ./clients
COPY tools ./tools
RUN bash scripts/gen-proto.sh \
 && uv sync --frozen --all-packages --no-dev --no-editable

# Runtime stage: the Python runtime and the virtualenv only. No pip, no
# setuptools, no compiler; runs as an unprivileged numeric user.
FROM python:3.11.14-slim-bookworm
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && rm -rf /usr/local/lib/python3.11/ensurepip /root/.cache \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin casemesh \
 && install -d -o 10001 -g 10001 /var/lib/casemesh /var/lib/casemesh/evidence /var/lib/casemesh/sinks
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/casemesh
USER 10001:10001
EXPOSE 50051 8080 9464
ENTRYPOINT ["python", "-m"]
CMD ["casemesh_gateway"]
