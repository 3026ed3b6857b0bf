# One image for every Casemesh service; the command picks the service.
# Build stage: generate code from proto/ and install the workspace (no dev tools).
FROM python:3.11.7-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9 grpcio-tools==1.85.1 mypy-protobuf==5.1.0
WORKDIR /app
COPY . .
RUN bash scripts/gen-proto.sh \
 && uv sync --frozen --all-packages --no-dev --no-editable

# Runtime stage: the virtualenv only, as an unprivileged user.
FROM python:3.11.7-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home casemesh \
 && install -d -o 10001 -g 10001 /var/lib/casemesh/evidence
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
ENTRYPOINT ["python", "-m"]
CMD ["casemesh_gateway"]
