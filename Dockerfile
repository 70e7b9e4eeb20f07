# The production image of the captionacc app: the Prefect flows, the API process, the Prefect
# worker, and the compiled `xtask` that Fly runs as release_command (`xtask register-flows`).
#
# Base images come from build args so production uses the official images while the tests
# (on an engine without a registry) pass locally built ones: `cargo xtask build-image --local-bases`.
# The file works with both BuildKit and the legacy builder (no RUN --mount, no heredocs).
ARG RUST_IMAGE=rust:1-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: compiles xtask in release mode -------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /build

# Dependencies first, against a stub crate: this layer is reused until Cargo.toml or Cargo.lock
# change, so a source edit recompiles only xtask itself. (A target declared with an explicit
# path in xtask/Cargo.toml, e.g. [[bench]], would need its own stub file here.)
COPY Cargo.toml Cargo.lock ./
COPY xtask/Cargo.toml xtask/Cargo.toml
RUN mkdir -p xtask/src \
 && echo 'fn main() {}' > xtask/src/main.rs \
 && touch xtask/src/lib.rs \
 && cargo build --release --locked --package xtask --bin xtask \
 && rm -rf xtask/src target/release/.fingerprint/xtask-* target/release/deps/xtask-* \
           target/release/deps/libxtask-* target/release/xtask

# The real sources. The stub's fingerprints are gone, so cargo rebuilds xtask whatever the mtimes.
COPY xtask/src xtask/src
RUN cargo build --release --locked --package xtask --bin xtask \
 && install -m 0755 target/release/xtask /usr/local/bin/xtask \
 && /usr/local/bin/xtask --version

# ---- runtime: Python with the pinned Prefect, the app, xtask on PATH -------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    APP_DIR=/app

# Prefect from the single pin (app/requirements.txt) as locked with every dependency by version
# and hash (app/requirements.lock, `cargo xtask lock-python`): two builds of one commit install
# the same files. A venv owned by root: the app user can run it but not modify it.
COPY app/requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes --requirement /tmp/requirements.lock \
 && rm /tmp/requirements.lock \
 && prefect --version

RUN useradd --create-home --home-dir /home/app --uid 10001 --user-group --shell /usr/sbin/nologin app

COPY --from=builder /usr/local/bin/xtask /usr/local/bin/xtask

# /app is APP_DIR (fly.toml [env]): the deployments' pull step sets the flow runs' working
# directory to it, and `xtask register-flows` finds prefect.yaml here.
WORKDIR /app
COPY prefect.yaml prefect-dev.yaml fly.toml ./
COPY app ./app
# The old release entry point, kept as a shim that execs `xtask register-flows`.
COPY scripts/deploy_flows.sh ./scripts/deploy_flows.sh

# The release this image is (docs/releases.md): `cargo xtask build-image`/`deploy` pass the image
# reference and the git commit; the release command records it on every deployment. Declared
# last, so a new commit rebuilds only this layer.
ARG XTASK_IMAGE=""
ARG XTASK_COMMIT=""
RUN printf 'image=%s\ncommit=%s\n' "$XTASK_IMAGE" "$XTASK_COMMIT" > /app/.xtask-release

USER app
EXPOSE 8080
# The `app` process group of fly.toml; the `worker` group and release_command override it.
CMD ["python", "-m", "app.api"]
