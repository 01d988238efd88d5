# syntax=docker/dockerfile:1
# One image per service, from one build stage:
#   docker build --target image-upload  -t crowd/image-upload:0.1.0 .
#   docker build --target image-predict -t crowd/image-predict:0.1.0 .
#   docker build --target dashboard     -t crowd/dashboard:0.1.0 .
# The tag is the crates' version; k8s/base/*.yaml name the same tags.
# checkov:skip=CKV_DOCKER_2: Kubernetes ignores HEALTHCHECK; the manifests probe /healthz and /readyz, and the runtime image has no HTTP client to run one.

# --- build: the three service binaries, release profile, locked dependencies -------------------
# The toolchain CI uses (rustc 1.95.0); slim keeps the C compiler the -sys crates need.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds of the three targets and across changes.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p image-upload -p image-predict -p dashboard --bins \
    && mkdir -p /out \
    && cp target/release/image-upload target/release/image-predict target/release/dashboard /out/

# --- runtime: Debian slim (glibc and libgcc the binaries link to, coreutils `sleep` for the
# preStop hook), a fixed non-root user that the manifests' runAsUser repeats ------------------
FROM debian:12.11-slim AS runtime
RUN groupadd --system --gid 10001 crowd \
    && useradd --system --uid 10001 --gid crowd --no-create-home --shell /usr/sbin/nologin crowd \
    && install -d -o crowd -g crowd /var/lib/crowd/dashboard
WORKDIR /opt/crowd
USER 10001:10001

FROM runtime AS image-upload
COPY --from=build /out/image-upload /usr/local/bin/image-upload
EXPOSE 8003
ENTRYPOINT ["/usr/local/bin/image-upload"]

FROM runtime AS dashboard
COPY --from=build /out/dashboard /usr/local/bin/dashboard
# The embedded store's directory (DASHBOARD_STORE=embedded); Kubernetes mounts a volume here.
ENV DASHBOARD_DATA_DIR=/var/lib/crowd/dashboard
EXPOSE 4400
ENTRYPOINT ["/usr/local/bin/dashboard"]

# Last, so that a plain `docker build .` builds the image with the models.
FROM runtime AS image-predict
COPY --from=build /out/image-predict /usr/local/bin/image-predict
# Both models with their licences and provenance: the CenterNet detector and the CSRNet density model.
COPY models/ /opt/crowd/models/
ENV DETECTOR_MODEL=/opt/crowd/models/centernet/centernet.onnx \
    DENSITY_MODEL=/opt/crowd/models/csrnet/csrnet.onnx
EXPOSE 8002
ENTRYPOINT ["/usr/local/bin/image-predict"]
