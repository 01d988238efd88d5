# One image per service, from one Dockerfile. Needs BuildKit (the default builder since Docker 23;
# DOCKER_BUILDKIT=1 on Docker 20.10): it builds only the stages a target needs.
#
# The full build compiles the workspace in the build stage (long on a small machine: docs/deploy.md
# has the measured time):
#   docker build --target image-upload  -t localhost/crowd/image-upload:0.1.0 .
#   docker build --target image-predict -t localhost/crowd/image-predict:0.1.0 .
#   docker build --target dashboard     -t localhost/crowd/dashboard:0.1.0 .
#
# From release binaries already built on a Debian 12 (glibc 2.36) host, without the Rust stage
# (`cargo build --release --locked --bins -p image-upload -p image-predict -p dashboard`), with a
# build context holding target/release/{image-upload,image-predict,dashboard} and models/:
#   tools/container-check/build.sh   (stages that context under target/, builds the three images)
#   docker build --build-arg BINARIES=prebuilt --target image-upload -t ... -f Dockerfile CONTEXT
#
# The tag is the crates' version; k8s/base/*.yaml name the same tags (k8s/overlays/registry/
# renames them for your registry).
# checkov:skip=CKV_DOCKER_2: Kubernetes ignores HEALTHCHECK; the manifests probe /healthz and /readyz on the ops port, and the runtime image has no HTTP client to run one.
# checkov:skip=CKV_DOCKER_7: it flags FROM binaries-${BINARIES}, a stage chosen by a build argument, as an untagged image; tools/k8s-check (dockerfile_from_errors) checks that every external FROM has a pinned tag instead.

# build (the default) or prebuilt: where the three binaries come from.
ARG BINARIES=build

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

FROM scratch AS binaries-build
COPY --from=build /out/ /

# The context's target/release/ (tools/container-check/build.sh stages it; the repository's
# .dockerignore keeps target/ out of the full build's context).
FROM scratch AS binaries-prebuilt
COPY target/release/image-upload target/release/image-predict target/release/dashboard /

FROM binaries-${BINARIES} AS binaries

# --- runtime: Debian 12 slim (glibc and libgcc the binaries link to, coreutils `sleep` for the
# preStop hook), the system CA bundle (rediss:// to a managed Redis verifies against it), a fixed
# non-root user that the manifests' runAsUser repeats -------------------------------------------
# The CA bundle alone, from Debian's ca-certificates (the package would bring openssl, about
# 95 MB, into every image; the services read only the bundle, through rustls-native-certs).
FROM debian:bookworm-slim AS certificates
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null

FROM debian:bookworm-slim AS runtime
COPY --from=certificates /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN groupadd --system --gid 10001 crowd \
    && useradd --system --uid 10001 --gid crowd --no-create-home --shell /usr/sbin/nologin crowd \
    && install -d -o crowd -g crowd /var/lib/crowd/dashboard
WORKDIR /opt/crowd
USER 10001:10001

FROM runtime AS image-upload
COPY --from=binaries /image-upload /usr/local/bin/image-upload
# 8003 public (upload page and API), 9003 ops (/metrics, /healthz, /readyz).
EXPOSE 8003 9003
ENTRYPOINT ["/usr/local/bin/image-upload"]

FROM runtime AS dashboard
COPY --from=binaries /dashboard /usr/local/bin/dashboard
# The embedded store's directory (DASHBOARD_STORE=embedded); Kubernetes mounts a volume here.
ENV DASHBOARD_DATA_DIR=/var/lib/crowd/dashboard
# 4400 public (page, REST, /ws/live), 4401 ingest (image-predict only), 9400 ops.
EXPOSE 4400 4401 9400
ENTRYPOINT ["/usr/local/bin/dashboard"]

# Last, so that a plain `docker build .` builds the image with the models.
FROM runtime AS image-predict
COPY --from=binaries /image-predict /usr/local/bin/image-predict
# Both models with their licences and provenance: the CenterNet detector and the CSRNet density
# model, where the binary looks first (CROWD_MODELS_DIR).
COPY models/ /opt/crowd/models/
ENV CROWD_MODELS_DIR=/opt/crowd/models
# 8002 counting API (image-upload only), 9002 ops.
EXPOSE 8002 9002
ENTRYPOINT ["/usr/local/bin/image-predict"]
