#!/usr/bin/env bash
# Builds umlmon's own UML kernel (x86-64) from Debian's kernel source package, with the config
# fragment hack/kernel/umlmon.config applied on allnoconfig, the way Kata Containers builds its
# guest kernel. Why our own: Debian's packaged UML kernels (6.1, 6.12) have a fixed-size FP
# register buffer and die at the first userspace process on hosts whose XSAVE area is larger
# (AVX-512, AMX); Linux 7.2 sizes it from the host.
#
#   hack/build-kernel.sh            build (or take from the cache) and print the kernel's path
#   hack/build-kernel.sh --install  also install it as /usr/local/lib/umlmon/linux-<key> and
#                                   point /usr/local/lib/umlmon/linux at it
#
# Everything lives in a machine-level cache outside the checkout (CI clones afresh each time):
#   $UMLMON_CACHE (default /var/cache/umlmon)/
#     apt/            a private apt configuration: the machine's apt sources stay as they are
#     kernel-src/     the pinned source .deb
#     kernel-build/   the unpacked tree (kept: a rebuild after a fragment change is quick)
#     kernels/        built kernels, keyed by source version and fragment hash
set -euo pipefail
cd "$(dirname "$0")/.."

# The pin. The archive keeps only a few point releases of a backport: when this one has left
# it, the download fails with the versions on offer and how to bump.
SOURCE_PACKAGE=linux-source-7.2
SOURCE_VERSION=7.2.12-1~bpo13+1
SOURCE_SHA256=73ca6c22599ba411ab3179642d33501ca2c90174e13c3c8d86e996ea1cbf2a8f
SOURCE_SUITE=trixie-backports
APT_MIRROR=${UMLMON_DEBIAN_MIRROR:-http://deb.debian.org/debian}

FRAGMENT=hack/kernel/umlmon.config
CACHE=${UMLMON_CACHE:-/var/cache/umlmon}
INSTALL_DIR=/usr/local/lib/umlmon
JOBS=${UMLMON_KERNEL_JOBS:-$(nproc)}

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { printf 'build-kernel: error: %s\n' "$*" >&2; exit 1; }

install=false
case "${1:-}" in
  --install) install=true ;;
  "") ;;
  *) die "usage: hack/build-kernel.sh [--install]" ;;
esac

# The cache key: what the kernel is built from. The script's own build steps are part of it,
# so a change to how it builds rebuilds.
fragment_hash=$(cat "$FRAGMENT" <(sed -n '/^# --- build steps ---$/,$p' "$0") | sha256sum | cut -c1-12)
upstream_version=${SOURCE_VERSION%%-*}
key="$upstream_version-$fragment_hash"
built="$CACHE/kernels/linux-$key"

install_kernel() {
  mkdir -p "$INSTALL_DIR"
  install -m 0755 "$built" "$INSTALL_DIR/linux-$key.tmp"
  mv -f "$INSTALL_DIR/linux-$key.tmp" "$INSTALL_DIR/linux-$key"
  ln -sfn "linux-$key" "$INSTALL_DIR/linux.tmp"
  mv -Tf "$INSTALL_DIR/linux.tmp" "$INSTALL_DIR/linux"
  log "installed $INSTALL_DIR/linux -> linux-$key"
}

if [ -x "$built" ]; then
  log "cached: $built"
  $install && install_kernel
  echo "$built"
  exit 0
fi

# --- build steps ---
for tool in gcc make flex bison bc xz strip sha256sum dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || die "$tool is missing (hack/setup.sh installs the build dependencies)"
done

apt_dir="$CACHE/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$CACHE/kernel-src" "$CACHE/kernels"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $APT_MIRROR $SOURCE_SUITE main" > "$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root"
)

deb="$CACHE/kernel-src/${SOURCE_PACKAGE}_${SOURCE_VERSION//:/%3a}_all.deb"
verify() { [ -f "$deb" ] && echo "$SOURCE_SHA256  $deb" | sha256sum --check --status; }
if ! verify; then
  rm -f "$deb"
  log "fetching $SOURCE_PACKAGE $SOURCE_VERSION from $SOURCE_SUITE (private apt configuration)"
  apt-get "${apt_opts[@]}" -qq update || die "apt-get update of $SOURCE_SUITE failed (see above)"
  if ! (cd "$CACHE/kernel-src" && apt-get "${apt_opts[@]}" -qq download "$SOURCE_PACKAGE=$SOURCE_VERSION"); then
    offered=$(apt-cache "${apt_opts[@]}" madison "$SOURCE_PACKAGE" 2>/dev/null | awk '{print $3}' | tr '\n' ' ')
    die "the pinned $SOURCE_PACKAGE $SOURCE_VERSION is no longer in $SOURCE_SUITE (on offer: ${offered:-none}).
  Bump the pin in hack/build-kernel.sh: SOURCE_VERSION to one on offer and SOURCE_SHA256 to its
  'SHA256:' from: apt-cache show $SOURCE_PACKAGE=<version> (with the private apt options above),
  or sha256sum of the downloaded .deb."
  fi
  verify || die "$deb does not match the pinned sha256 $SOURCE_SHA256 (got $(sha256sum "$deb" | cut -d' ' -f1)); refusing to build from it"
fi

tree="$CACHE/kernel-build/linux-$upstream_version"
if [ ! -f "$tree/.umlmon-unpacked-$SOURCE_VERSION" ]; then
  log "unpacking the source into $tree"
  rm -rf "$tree" "$tree.unpack"
  mkdir -p "$tree.unpack"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree.unpack" --wildcards './usr/src/linux-source-*.tar.xz'
  tar -xf "$tree.unpack"/usr/src/linux-source-*.tar.xz -C "$tree.unpack"
  mv "$tree.unpack"/linux-source-* "$tree"
  rm -rf "$tree.unpack"
  touch "$tree/.umlmon-unpacked-$SOURCE_VERSION"
fi

started=$(date +%s)
make_args=(-C "$tree" ARCH=um SUBARCH=x86_64 -j"$JOBS")
log "configuring: allnoconfig + $FRAGMENT"
make "${make_args[@]}" -s KCONFIG_ALLCONFIG="$PWD/$FRAGMENT" allnoconfig

# Every option of the fragment must be in the result: Kconfig drops a symbol silently when it
# was renamed or a dependency is missing, and the kernel would lack it without a word.
dropped=()
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF -- "$line" "$tree/.config" || dropped+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$tree/.config" || echo absent))") ;;
    "# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}; ! grep -q "^$sym=" "$tree/.config" || dropped+=("$line") ;;
  esac
done < "$FRAGMENT"
if [ ${#dropped[@]} -gt 0 ]; then
  die "Kconfig did not take these options of $FRAGMENT:$(printf '\n  %s' "${dropped[@]}")"
fi

log "building with -j$JOBS (a clean build takes about 6 minutes on 2 cores)"
make "${make_args[@]}" -s linux
strip -o "$built.tmp" "$tree/linux"
mv -f "$built.tmp" "$built"
log "built $built ($(du -h "$built" | cut -f1), $(( $(date +%s) - started )) s): $("$built" --version 2>/dev/null | head -1)"
$install && install_kernel
echo "$built"
