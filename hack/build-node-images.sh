#!/usr/bin/env bash
# Builds (or takes from the cache) the images a one-node test cluster needs where no container
# registry can be reached (our machines reach Debian's archive and the npm registry only), and
# loads them into podman's image store:
#   base    a Debian bookworm base image: `debootstrap --variant=minbase bookworm` imported with
#           `podman import` (the Containerfile's BASE_IMAGE build argument)
#   kernel  umlmon's installed UML kernel (/usr/local/lib/umlmon/, built by
#           hack/build-kernel.sh) as a one-layer image (the Containerfile's KERNEL_IMAGE build
#           argument, in place of its kernel build stage)
#   pause   the pod sandbox image: Kubernetes' own build/pause/linux/pause.c, from the same
#           Debian kubernetes source hack/build-control-plane.sh builds from, compiled static
#           (the kubelet's --pod-infra-container-image, containerd's sandbox_image)
#
#   hack/build-node-images.sh     prints NAME=IMAGE lines (base=..., kernel=..., pause=...)
#
# stdout is only those lines; the log goes to stderr. Each image's root filesystem tarball is
# kept in $UMLMON_CACHE (default /var/cache/umlmon)/node-images/, keyed by what it is built from
# (the suite, the kernel file, the source version), and re-imported when podman lacks it.
# A cold run takes under a minute (debootstrap, 40 s here); a cached one a tenth of a second.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
APT_MIRROR=${UMLMON_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${UMLMON_CACHE:-/var/cache/umlmon}
KERNEL_DIR=/usr/local/lib/umlmon
out="$CACHE/node-images"

log() { printf 'build-node-images: %s\n' "$*" >&2; }
die() { printf 'build-node-images: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 0 ] || die "usage: hack/build-node-images.sh (no arguments)"
for tool in podman debootstrap gcc tar flock nice sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (hack/setup.sh installs it)"
done
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, podman's system store, $CACHE)"

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

have_image() { podman image exists "$1"; }

# Imports a root filesystem tarball as IMAGE unless podman has it; extra args are --change lines.
import() {
  local image=$1 tarball=$2; shift 2
  if ! have_image "$image"; then
    log "podman import $tarball as $image"
    podman import -q "$@" "$tarball" "$image" >/dev/null || die "podman import of $tarball failed"
  fi
}

# --- base: debootstrap minbase ---
base_tar="$out/debian-$SUITE-minbase.tar"
base_image="localhost/umlmon-base:$SUITE-minbase"
if [ ! -f "$base_tar" ]; then
  started=$(date +%s)
  root="$out/debootstrap.tmp"
  rm -rf "$root"
  log "debootstrap --variant=minbase $SUITE from $APT_MIRROR (under a minute)"
  if ! nice -n 10 debootstrap --variant=minbase "$SUITE" "$root" "$APT_MIRROR" >"$out/debootstrap.log" 2>&1; then
    tail -n 30 "$out/debootstrap.log" >&2
    die "debootstrap failed (the log above, all of it in $out/debootstrap.log)"
  fi
  # apt's lists and the downloaded .debs are not part of an image.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$root" -cf "$base_tar.tmp" . || die "tar of the debootstrap tree failed"
  mv "$base_tar.tmp" "$base_tar"
  rm -rf "$root"
  log "base built in $(( $(date +%s) - started )) s: $(du -h "$base_tar" | cut -f1)"
fi
import "$base_image" "$base_tar" --change 'CMD ["/bin/bash"]'

# --- kernel: the installed UML kernel, keyed by the file the default link points at ---
[ -L "$KERNEL_DIR/linux" ] || die "$KERNEL_DIR/linux is missing (hack/build-kernel.sh --install builds it)"
kernel_file=$(readlink "$KERNEL_DIR/linux")
[ -x "$KERNEL_DIR/$kernel_file" ] || die "$KERNEL_DIR/linux points at $kernel_file, which is missing"
kernel_tar="$out/$kernel_file.tar"
kernel_image="localhost/umlmon-kernel:$kernel_file"
if [ ! -f "$kernel_tar" ]; then
  tmp="$out/kernel.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp/usr/local/lib/umlmon"
  cp -p "$KERNEL_DIR/$kernel_file" "$tmp/usr/local/lib/umlmon/"
  ln -s "$kernel_file" "$tmp/usr/local/lib/umlmon/linux"
  tar --numeric-owner --owner=0 --group=0 -C "$tmp" -cf "$kernel_tar.tmp" usr
  mv "$kernel_tar.tmp" "$kernel_tar"
  rm -rf "$tmp"
fi
# A COPY --from source only: it never runs, but an image needs some command.
import "$kernel_image" "$kernel_tar" --change 'CMD ["/usr/local/lib/umlmon/linux", "--version"]'

# --- pause: Kubernetes' pause.c from the control plane's source tree ---
cp_src=$(ls -d "$CACHE"/control-plane-build/kubernetes-*/build/pause/linux 2>/dev/null | sort | tail -1)
[ -n "$cp_src" ] && [ -f "$cp_src/pause.c" ] || die "no pause.c under $CACHE/control-plane-build (run hack/build-control-plane.sh first)"
pause_tag=$(sed -n 's/^TAG = //p' "$cp_src/../Makefile")
[ -n "$pause_tag" ] || die "no TAG in $cp_src/../Makefile"
pause_key=$(sha256sum "$cp_src/pause.c" | cut -c1-12)
pause_tar="$out/pause-$pause_tag-$pause_key.tar"
pause_image="localhost/umlmon-pause:$pause_tag-$pause_key"
if [ ! -f "$pause_tar" ]; then
  tmp="$out/pause.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # As build/pause/Makefile compiles it.
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-umlmon" -o "$tmp/pause" "$cp_src/pause.c" || die "compiling pause.c failed"
  tar --numeric-owner --owner=0 --group=0 -C "$tmp" -cf "$pause_tar.tmp" pause
  mv "$pause_tar.tmp" "$pause_tar"
  rm -rf "$tmp"
fi
import "$pause_image" "$pause_tar" --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535'

echo "base=$base_image"
echo "kernel=$kernel_image"
echo "pause=$pause_image"
