# Sourced by tools/container-check/build.sh and run.sh: the Docker engine and the base images,
# made on this machine (no container registry is reachable here, so nothing can be pulled).
# Needs root (apt-get, dockerd, debootstrap), as CI and the developers' machines run.

cc_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Scratch space of the check (the debootstrap tree, the staged build context, logs).
cc_work="$cc_repo/target/container-check"
mkdir -p "$cc_work"
# Debian's mirror, which debootstrap and the images' apt use (the one this machine's apt uses).
cc_mirror="${CROWD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cc_security_mirror="${CROWD_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# The Dockerfile's FROM names, made here (base_images below).
cc_debian_image=debian:bookworm-slim
cc_rust_image=rust:1.95.0-slim-bookworm
cc_rust_version=1.95.0
# Redis for the container check only: Debian's redis-server on the Debian base (the manifests'
# redis:7.4.x is Docker Hub's, which cannot be pulled here).
cc_redis_image=crowd-check/redis:bookworm
cc_dockerd_pid=""

cc_log() { printf 'container-check: %s\n' "$*" >&2; }

cc_apt_install() {
  cc_log "installing $* (Debian packages)"
  if [ -z "${cc_apt_updated:-}" ]; then apt-get update -qq; cc_apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Seconds since the epoch with decimals, and the time since $1 as "12.3 s".
cc_now() { date +%s.%N; }
cc_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }'; }

# The engine: Debian's docker.io (dockerd 20.10 with BuildKit built in) when no engine answers.
# The client: one that builds with BuildKit. A client of Docker 23 or later needs its buildx
# plugin for that; without it (as the docker at /usr/local/bin here) Debian's own client is used.
cc_engine() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ "${#missing[@]}" -gt 0 ]; then cc_apt_install "${missing[@]}"; fi
  export DOCKER_BUILDKIT=1
  if docker buildx version >/dev/null 2>&1; then
    DOCKER=docker
  elif [ -x /usr/bin/docker ]; then
    DOCKER=/usr/bin/docker
  else
    cc_apt_install docker.io
    DOCKER=/usr/bin/docker
  fi
  if ! "$DOCKER" info >/dev/null 2>&1; then
    cc_log "starting dockerd (log: $cc_work/dockerd.log)"
    dockerd >"$cc_work/dockerd.log" 2>&1 &
    cc_dockerd_pid=$!
    local i
    for i in $(seq 60); do
      "$DOCKER" info >/dev/null 2>&1 && break
      kill -0 "$cc_dockerd_pid" 2>/dev/null || { tail -20 "$cc_work/dockerd.log" >&2; return 1; }
      sleep 1
    done
    "$DOCKER" info >/dev/null 2>&1 || { cc_log "dockerd did not answer in 60 s"; return 1; }
  fi
  export DOCKER
}

# Stops the engine if cc_engine started it (images stay in /var/lib/docker for the next run).
cc_engine_stop() {
  if [ -n "$cc_dockerd_pid" ] && [ -z "${CONTAINER_CHECK_KEEP_ENGINE:-}" ]; then
    kill -TERM "$cc_dockerd_pid" 2>/dev/null || true
    wait "$cc_dockerd_pid" 2>/dev/null || true
    cc_dockerd_pid=""
  fi
}

cc_image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# debian:bookworm-slim from Debian's packages: debootstrap's minbase, with the security and
# updates suites, upgraded, and slimmed as Debian's own slim images are (no apt lists, docs, man
# pages or locales), imported as one layer. Skipped when the tag exists.
cc_debian_base() {
  if cc_image_exists "$cc_debian_image"; then return 0; fi
  local start dir
  start="$(cc_now)"
  dir="$cc_work/rootfs-bookworm"
  rm -rf "$dir"
  cc_log "making $cc_debian_image with debootstrap (log: $cc_work/debootstrap.log)"
  debootstrap --variant=minbase bookworm "$dir" "$cc_mirror" >"$cc_work/debootstrap.log" 2>&1 \
    || { tail -20 "$cc_work/debootstrap.log" >&2; return 1; }
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $cc_mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $cc_security_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  chroot "$dir" apt-get update -qq >>"$cc_work/debootstrap.log" 2>&1
  DEBIAN_FRONTEND=noninteractive chroot "$dir" apt-get upgrade -y -qq >>"$cc_work/debootstrap.log" 2>&1
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  tar -C "$dir" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$cc_debian_image" >/dev/null
  rm -rf "$dir"
  cc_log "made $cc_debian_image in $(cc_since "$start") (Debian $(
    "$DOCKER" run --rm "$cc_debian_image" cat /etc/debian_version))"
}

# Redis for the container check: Debian's redis-server installed on the base above (the build's
# apt reaches Debian's mirror, as debootstrap did). /data belongs to UID 10001, the manifests' user.
cc_redis_image() {
  if cc_image_exists "$cc_redis_image"; then return 0; fi
  local start
  start="$(cc_now)"
  "$DOCKER" build -q -t "$cc_redis_image" - >/dev/null <<EOF
FROM $cc_debian_image
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \\
 && rm -rf /var/lib/apt/lists/* \\
 && install -d -o 10001 -g 10001 /data
USER 10001:10001
CMD ["redis-server"]
EOF
  cc_log "made $cc_redis_image in $(cc_since "$start") ($(
    "$DOCKER" run --rm "$cc_redis_image" redis-server --version | cut -d' ' -f1-3))"
}

# rust:1.95.0-slim-bookworm, for the Dockerfile's full build only: the Debian base with the C
# compiler the -sys crates need, this machine's Rust 1.95.0 toolchain (rustup's, without its
# documentation) in /usr/local/rust, with cargo's home at /usr/local/cargo as in the official
# image, and this machine's local CAs. Skipped when the tag exists.
cc_rust_base() {
  if cc_image_exists "$cc_rust_image"; then return 0; fi
  local start toolchain="" t ctx
  start="$(cc_now)"
  for t in "$HOME/.rustup/toolchains/$cc_rust_version-x86_64-unknown-linux-gnu" \
    "$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu"; do
    if grep -qs "^version = \"$cc_rust_version " "$t/lib/rustlib/multirust-channel-manifest.toml"; then
      toolchain="$t"
      break
    fi
  done
  [ -n "$toolchain" ] || { cc_log "no Rust $cc_rust_version toolchain under ~/.rustup"; return 1; }
  ctx="$cc_work/rust-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/rust" "$ctx/ca"
  cp -a "$toolchain/bin" "$toolchain/lib" "$toolchain/libexec" "$toolchain/etc" "$ctx/rust/"
  # This machine's own CAs (where a proxy re-signs TLS, as here), so that cargo in the build
  # stage reaches crates.io as cargo on this machine does.
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  "$DOCKER" build -q -t "$cc_rust_image" -f - "$ctx" >/dev/null <<EOF
FROM $cc_debian_image
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY rust/ /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
  rm -rf "$ctx"
  cc_log "made $cc_rust_image from $toolchain in $(cc_since "$start")"
}
