#!/usr/bin/env bash
# Build the Dockerfile's images without a Docker daemon: buildah (chroot isolation), from Debian's packages.
#
#   bash hack/build-images.sh            the operator image  (ghcr.io/selfguide/selfguide-operator:<appVersion>)
#   bash hack/build-images.sh stage      the stage image     (ghcr.io/selfguide/selfguide:<appVersion>)
#   bash hack/build-images.sh operator stage
#
# The base (the Dockerfile's BASE argument): SELFGUIDE_BASE_IMAGE if set, else python:3.11-slim-bookworm where it
# can be pulled, else a minimal Debian bookworm with python3 and pip that this script assembles with mmdebstrap.
# Everything lives under ~/.cache/selfguide/containers (image store, base rootfs); rerunning with nothing changed
# takes seconds (buildah --layers). Use the images with the same store:
#   CONTAINERS_STORAGE_CONF=~/.cache/selfguide/containers/storage.conf \
#   CONTAINERS_CONF=~/.cache/selfguide/containers/containers.conf podman run ...
# Prints one line per image built: `<target> <image> <size in MB> <seconds>`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SELFGUIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/selfguide}/containers"
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/selfguide/Chart.yaml")
declare -A repository=([operator]=ghcr.io/selfguide/selfguide-operator [stage]=ghcr.io/selfguide/selfguide)
targets=("${@:-operator}")
for target in "${targets[@]}"; do
  [[ -n "${repository[$target]:-}" ]] || { echo "unknown target $target (operator or stage)" >&2; exit 2; }
done

log() { echo "build-images: $*" >&2; }

# 1. The tools, from Debian's packages.
missing=()
for tool in buildah podman runc mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt)"
  [[ $(id -u) == 0 ]] || { echo "needs root to apt-get install ${missing[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    buildah podman runc mmdebstrap uidmap ca-certificates >/dev/null
fi

# 2. One image store for buildah and podman: overlay where the kernel lets us mount it, else vfs (slower, bigger).
mkdir -p "$cache"
export CONTAINERS_STORAGE_CONF="$cache/storage.conf" CONTAINERS_CONF="$cache/containers.conf"
driver=$(sed -n 's/^driver = "\(.*\)"$/\1/p' "$CONTAINERS_STORAGE_CONF" 2>/dev/null || true)
if [[ -z "$driver" ]]; then
  driver=vfs
  probe=$(mktemp -d "$cache/.probe.XXXXXX")
  mkdir -p "$probe"/{l,u,w,m}
  if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
    umount "$probe/m"
    driver=overlay
  fi
  rm -rf "$probe"
fi
# Run state (locks, mounts) under /run, one directory per store.
cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "$driver"
graphroot = "$cache/storage-$driver"
runroot = "/run/selfguide-containers-$(printf %s "$cache" | sha256sum | cut -c1-8)"
EOF
# For `podman run` where there is no systemd or journald (containers, CI machines): runc (crun refuses hybrid
# cgroup v1/v2 hosts), cgroupfs, file events, host network, and open-file and process limits no higher than
# this shell's and conmon's (32768 processes): podman's defaults would raise them, which needs CAP_SYS_RESOURCE.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
cat >"$CONTAINERS_CONF" <<EOF
[containers]
netns = "host"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
log "store: $driver in $cache"

# 3. The base image.
upstream=docker.io/library/python:3.11-slim-bookworm
base=${SELFGUIDE_BASE_IMAGE:-}
if [[ -z "$base" ]]; then
  if podman image exists "$upstream" || timeout 300 podman pull --quiet "$upstream" >/dev/null 2>&1; then
    base=$upstream
  else
    # What python:3.11-slim-bookworm gives the Dockerfile: python3.11 (as python too), pip installing system-wide
    # into /usr/local, useradd. No docs, man pages or locales; apt lists dropped.
    packages=python3,python3-pip,python-is-python3,ca-certificates,passwd
    hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED'
    key=$(printf '%s\n' bookworm "$packages" "$hook" 2 | sha256sum | cut -c1-12)
    base=localhost/selfguide-base:bookworm-$key
    tarball="$cache/base-bookworm-$key.tar"
    if ! podman image exists "$base"; then
      if [[ ! -f "$tarball" ]]; then
        log "$upstream cannot be pulled: assembling $base with mmdebstrap"
        start=$SECONDS
        mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" --components=main \
          --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
          --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
          --customize-hook="$hook" --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
          bookworm "$tarball.tmp" http://deb.debian.org/debian
        mv "$tarball.tmp" "$tarball"
        log "assembled the base rootfs in $((SECONDS - start))s"
      fi
      podman import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$tarball" "$base" >/dev/null
    fi
  fi
fi
log "base: $base"

# 4. The images (chroot isolation: no nested namespaces needed; the build's RUN steps use the host's network).
# RUN steps trust the host's CA bundle (a TLS-intercepting proxy): mounted over the base's for the build only, never
# in a layer. Debian's pip (the assembled base) reads it; python:3.11-slim's pip uses its own certifi bundle.
trust=()
ca=${SELFGUIDE_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
[[ -f "$ca" ]] && trust=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
# The image carries a digest of its sources (what .dockerignore lets in), so tests can tell a stale image.
source=$(cd "$root" && find pyproject.toml README.md requirements selfguide selfguide_operator -type f \
  ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
for target in "${targets[@]}"; do
  image=${repository[$target]}:$version
  start=$SECONDS
  log "building $image (target $target)"
  buildah bud --quiet --layers --isolation chroot --network host "${trust[@]}" --build-arg "BASE=$base" \
    --label "dev.selfguide.source=$source" --target "$target" --tag "$image" --file "$root/Dockerfile" "$root" >/dev/null
  size=$(podman image inspect --format '{{.Size}}' "$image")
  echo "$target $image $((size / 1000000)) $((SECONDS - start))"
done
