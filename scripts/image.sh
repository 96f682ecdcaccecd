#!/usr/bin/env bash
# Builds the container image (Containerfile): release builds of echo-server
# and echo-client, stripped, and the shared libraries they load (libc,
# libgcc_s, the dynamic loader: whatever ldd names), in a FROM scratch image.
# Usage: scripts/image.sh [TAG]      (default localhost/echo:latest)
# Uses podman where present, else docker (CONTAINER_ENGINE=... to choose).
# ECHO_IMAGE_BIN=DIR takes the binaries from DIR instead of building them.
set -euo pipefail
# -P: the physical path, so that cargo sees the workspace where every other
# build saw it (called as bin/../scripts/image.sh it would rebuild).
cd -P "$(dirname "$0")/.."
tag=${1:-localhost/echo:latest}
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then
    engine=podman
  elif command -v docker >/dev/null 2>&1; then
    engine=docker
  else
    echo "image.sh: neither podman nor docker is installed" >&2
    exit 1
  fi
fi
bin=${ECHO_IMAGE_BIN:-}
if [ -z "$bin" ]; then
  # What cargo tells a running test (bin/tests/image.rs runs this script)
  # is no setting of ours: passed on, it would dirty every crate whose build
  # script reads it, and rebuild them all.
  for v in $(compgen -e | grep -E '^(CARGO_(MANIFEST_|PKG_|CRATE_NAME|PRIMARY_PACKAGE|TARGET_TMPDIR|BIN_)|OUT_DIR$)'); do
    unset "$v"
  done
  cargo build --release --locked -p echo-bin --bins
  bin=target/release
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root=$context/rootfs
mkdir -p "$root/usr/local/bin" "$root/tmp"
chmod 1777 "$root/tmp" # --self-signed writes its CA certificate there
for b in echo-server echo-client; do
  # The line tables stay in target/release for backtraces; the image gets
  # none (about 40 MB each with them).
  strip --strip-all -o "$root/usr/local/bin/$b" "$bin/$b"
done
# Each library at the path the binaries name it by, its symlinks followed.
for lib in $(for b in "$root"/usr/local/bin/*; do ldd "$b"; done | grep -o '/[^ )]*' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp Containerfile "$context/"
"$engine" build --quiet --tag "$tag" --file "$context/Containerfile" "$context" >/dev/null
size=$("$engine" image inspect --format '{{.Size}}' "$tag")
echo "built $tag ($((size / 1000000)) MB, $size bytes)"
