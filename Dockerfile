# promsnmp container image: built in a Rust image, run in a small distroless
# one (glibc and libgcc only, no shell) as a non-root user.
#
#   DOCKER_BUILDKIT=1 docker build -t promsnmp .
#   docker run -p 8080:8080 -e PROM_ENCRYPT_KEY=... -v promsnmp-data:/app/data promsnmp
#
# BuildKit's built-in Dockerfile frontend is enough (no `# syntax=` line: that
# would pull a frontend image, which fails where no registry is reachable).
# The two base images are build arguments, for builds from a local mirror or
# stand-ins (tests/engine.rs builds with Debian-based ones):
#   --build-arg BUILD_IMAGE=... --build-arg RUNTIME_IMAGE=...
# The context has no .git: pass the commit for `promsnmp --version`,
# promsnmp_build_info and /actuator/info (else they say `unknown`):
#   --build-arg PROMSNMP_GIT_COMMIT=$(git rev-parse --short=12 HEAD)

ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
ARG PROMSNMP_GIT_COMMIT=
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY lua lua
# Cache mounts keep the registry and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/promsnmp /out/promsnmp \
    && mkdir -p /out/data

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/promsnmp /usr/local/bin/promsnmp
# An empty named volume mounted here takes this ownership: the replica (uid
# 65532, "nonroot") can write the inventory file.
COPY --from=build --chown=65532:65532 /out/data /app/data
WORKDIR /app
USER 65532:65532
ENV PROM_INV_FILE=/app/data/promsnmp-inventory.json \
    SERVER_PORT=8080
EXPOSE 8080
VOLUME ["/app/data"]
# Readiness of the local replica; no curl needed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/promsnmp", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/promsnmp"]
