#!/usr/bin/env bash
# Builds, without any registry, the images the compose test runs:
# - localhost/chat-relay-base:<codename>: Debian made by debootstrap from this machine's apt
#   mirror, with redis-server, nginx-light and libhiredis0.14 (it plays the redis, nginx and
#   runtime base images); built once, then reused;
# - localhost/chat-relay-binary:test: the host-built static release binary (the Dockerfile's
#   BINARY_STAGE), so the test does not build Swift inside a container.
#   compose-test-images.sh /path/to/chat-relay
set -euo pipefail
binary=$1
root=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF="$root/scripts/podman-containers.conf"
. /etc/os-release
base="localhost/chat-relay-base:${VERSION_CODENAME}"

if ! podman image exists "$base"; then
  mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}' | head -n 1)
  [ -n "$mirror" ] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list | grep -v security | awk '{print $2}' | head -n 1)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  rootfs=$(mktemp -d)
  echo "building $base with debootstrap from $mirror"
  debootstrap --variant=minbase --include=redis-server,nginx-light,libhiredis0.14 "$VERSION_CODENAME" "$rootfs" "$mirror" > "$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base" > /dev/null
  rm -rf "$rootfs" "$rootfs.log"
fi

context=$(mktemp -d)
cp "$binary" "$context/chat-relay"
strip "$context/chat-relay"
printf 'FROM scratch\nCOPY chat-relay /chat-relay\n' > "$context/Containerfile"
podman build -q -t localhost/chat-relay-binary:test "$context" > /dev/null
rm -rf "$context"
echo "$base"
