#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet) for umlmon's integration tests, and makes sure etcd is installed. Why build it: Debian
# ships only kubectl (kubernetes-client) from its kubernetes source package, no server binaries,
# and nothing but Debian's archive and the npm registry can be reached from our machines. So we
# build the servers from Debian bookworm's `kubernetes` source package (upstream v1.20.2, with
# its vendored dependencies) with Go 1.15 from Debian bullseye's golang-1.15-go, the Go that
# release was made with (newer Go does not build it), the way the package's debian/rules does:
# a GOPATH with src/k8s.io/kubernetes linking to the tree, CGO_ENABLED=0, and upstream's
# `make WHAT=cmd/...` (a plain `go build` lacks the generated OpenAPI definitions).
# etcd is Debian bookworm's etcd-server (3.4), installed with apt-get; its service is kept off.
#
#   hack/build-control-plane.sh     build (or take from the cache) and print the bin directory
#
# stdout is only the bin directory; the log goes to stderr. A cold build takes about 10 minutes
# on 2 cores; a second run with the cache present returns at once.
#
# Everything lives in a machine-level cache outside the checkout (CI clones afresh each time):
#   $UMLMON_CACHE (default /var/cache/umlmon)/
#     apt-cp/                       a private apt configuration (bookworm deb-src, bullseye deb):
#                                   the machine's own apt sources stay as they are
#     control-plane-src/            the pinned source package files and Go .debs
#     control-plane-build/go-<v>/   Go 1.15 unpacked with dpkg-deb -x (not installed)
#     control-plane-build/kubernetes-<v>/
#                                   the unpacked, patched tree (kept: a rebuild is quick)
#     control-plane/<v>/bin/        the built binaries, keyed by the source package version
set -euo pipefail
cd "$(dirname "$0")/.."

# The pins. When the archive no longer has them, the download fails naming the pin and the
# versions on offer.
SOURCE_PACKAGE=kubernetes
SOURCE_VERSION=1.20.5+really1.20.2-1.1+deb12u1
SOURCE_DSC_SHA256=19fa1da5aefcef673894ac9511986bd98a14410cf8eea0b626613c30df435257
SOURCE_SUITE=bookworm
GO_VERSION=1.15.15-1~deb11u4
GO_SUITE=bullseye
GO_GO_SHA256=33f6680406698b60370322aa5710be199006b3d66fbb0974b44da012de3aa82a
GO_SRC_SHA256=e580f570f706d801191f9a17e55156736fc5979a6a878bab9304ca007ae29941
ETCD_PACKAGE=etcd-server
APT_MIRROR=${UMLMON_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

CACHE=${UMLMON_CACHE:-/var/cache/umlmon}
out="$CACHE/control-plane/$SOURCE_VERSION"
bin="$out/bin"

log() { printf 'build-control-plane: %s\n' "$*" >&2; }
die() { printf 'build-control-plane: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 0 ] || die "usage: hack/build-control-plane.sh (no arguments)"

# etcd: Debian's package, installed from the machine's own sources. Its postinst would start the
# packaged service (init script, or systemd unit where systemd runs); tests start their own etcd,
# so the packaged one is stopped and disabled if it came up.
ensure_etcd() {
  if ! command -v etcd >/dev/null; then
    log "installing $ETCD_PACKAGE (etcd 3.4) with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "$ETCD_PACKAGE" >&2; then
      apt-get update -qq >&2 || die "apt-get update failed"
      apt-get install -y -qq --no-install-recommends "$ETCD_PACKAGE" >&2 || die "apt-get install $ETCD_PACKAGE failed"
    fi
    if [ -d /run/systemd/system ]; then
      systemctl disable --now etcd.service >&2 2>/dev/null || true
    elif [ -x /etc/init.d/etcd ]; then
      if /etc/init.d/etcd status >/dev/null 2>&1; then
        log "stopping the etcd service the package started"
        /etc/init.d/etcd stop >&2 || true
      fi
      update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
    command -v etcd >/dev/null || die "$ETCD_PACKAGE is installed but there is no etcd on PATH"
  fi
}

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if have_all; then
  ensure_etcd
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

# --- build steps ---
for tool in apt-get apt-cache dpkg-deb dpkg-source patch make bash find sed xz sha256sum flock nice; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[ "$(id -u)" = 0 ] || die "run as root (it installs $ETCD_PACKAGE and writes $CACHE)"

mkdir -p "$CACHE/control-plane"
# One build at a time (test files may start control planes in parallel on a cold machine).
exec 9>"$CACHE/control-plane/.lock"
flock 9
if have_all; then
  ensure_etcd
  log "cached (built by a concurrent run): $bin"
  echo "$bin"
  exit 0
fi
ensure_etcd

src_dir="$CACHE/control-plane-src"
build_dir="$CACHE/control-plane-build"
apt_dir="$CACHE/apt-cp"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src_dir" "$build_dir"
cat > "$apt_dir/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $APT_MIRROR $SOURCE_SUITE main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $APT_MIRROR $GO_SUITE main
EOF
apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root"
)
apt_updated=false
apt_update() {
  $apt_updated && return 0
  log "apt-get update of the private configuration ($SOURCE_SUITE deb-src, $GO_SUITE)"
  apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update of the private apt configuration failed (see above)"
  apt_updated=true
}
sha_ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }

# The source package: .dsc (pinned by sha256), which pins the orig and debian tarballs that
# dpkg-source checks when it unpacks.
dsc="$src_dir/${SOURCE_PACKAGE}_${SOURCE_VERSION}.dsc"
if ! sha_ok "$dsc" "$SOURCE_DSC_SHA256"; then
  apt_update
  log "fetching source package $SOURCE_PACKAGE $SOURCE_VERSION from $SOURCE_SUITE"
  if ! (cd "$src_dir" && apt-get "${apt_opts[@]}" -qq source --download-only "$SOURCE_PACKAGE=$SOURCE_VERSION" >&2); then
    offered=$(apt-cache "${apt_opts[@]}" showsrc "$SOURCE_PACKAGE" 2>/dev/null | sed -n 's/^Version: //p' | tr '\n' ' ')
    die "the pinned source package $SOURCE_PACKAGE=$SOURCE_VERSION (SOURCE_VERSION in hack/build-control-plane.sh)
  is no longer in Debian $SOURCE_SUITE (on offer: ${offered:-none}). Bump SOURCE_VERSION to one on offer
  and SOURCE_DSC_SHA256 to the sha256 of its .dsc (apt-cache showsrc $SOURCE_PACKAGE, Checksums-Sha256,
  with the private apt options of this script), then check the build still works."
  fi
  sha_ok "$dsc" "$SOURCE_DSC_SHA256" || die "$dsc does not match the pinned sha256 $SOURCE_DSC_SHA256; refusing to build from it"
fi

# Go 1.15, unpacked (not installed: the machine's own Go stays the default).
gover=${GO_VERSION%%-*}
goroot_base="$build_dir/go-$GO_VERSION"
goroot="$goroot_base/usr/lib/go-1.15"
if [ ! -x "$goroot/bin/go" ] || [ ! -f "$goroot_base/.umlmon-unpacked" ]; then
  rm -rf "$goroot_base"
  for pkg in golang-1.15-go golang-1.15-src; do
    deb="$src_dir/${pkg}_${GO_VERSION//:/%3a}_amd64.deb"
    want=$GO_GO_SHA256; [ "$pkg" = golang-1.15-src ] && want=$GO_SRC_SHA256
    if ! sha_ok "$deb" "$want"; then
      rm -f "$deb"
      apt_update
      log "fetching $pkg $GO_VERSION from $GO_SUITE"
      (cd "$src_dir" && apt-get "${apt_opts[@]}" -qq download "$pkg=$GO_VERSION" >&2) || die "the pinned $pkg=$GO_VERSION (GO_VERSION in hack/build-control-plane.sh) is no longer in Debian $GO_SUITE (on offer: $(apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null | awk '{print $3}' | tr '\n' ' '))"
      sha_ok "$deb" "$want" || die "$deb does not match the pinned sha256 $want"
    fi
    dpkg-deb -x "$deb" "$goroot_base"
  done
  # golang-1.15-go links its src to /usr/share/go-1.15/src: point it into the unpacked tree.
  for link in src test; do
    if [ -L "$goroot/$link" ]; then
      ln -sfn "../../share/go-1.15/$link" "$goroot/$link"
    fi
  done
  touch "$goroot_base/.umlmon-unpacked"
fi
[ -d "$goroot/src/runtime" ] || die "Go $gover unpacked without its sources ($goroot/src)"

# The tree: unpacked and patched with Debian's patches by dpkg-source, kept for quick rebuilds.
tree="$build_dir/kubernetes-$SOURCE_VERSION"
if [ ! -f "$tree/.umlmon-unpacked" ]; then
  log "unpacking the source into $tree"
  rm -rf "$tree"
  (cd "$src_dir" && dpkg-source -x "$dsc" "$tree" >&2) || die "dpkg-source -x failed"
  touch "$tree/.umlmon-unpacked"
fi

# Upstream's hack/lib/golang.sh places binaries with `rsync -pc FILE DIR`; rsync is not
# otherwise needed, so a cp stand-in does where it is missing.
tools="$build_dir/tools"
mkdir -p "$tools"
if ! command -v rsync >/dev/null; then
  cat > "$tools/rsync" <<'EOF'
#!/bin/sh
# Stand-in for `rsync -pc FILE... DIR`, the only call the kubernetes build makes.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
exec cp -p "$@"
EOF
  chmod +x "$tools/rsync"
fi

started=$(date +%s)
mkdir -p "$tree/.go/src/k8s.io" "$tree/.home"
[ -L "$tree/.go/src/k8s.io/kubernetes" ] || ln -s ../../.. "$tree/.go/src/k8s.io/kubernetes"
whats=$(printf 'cmd/%s ' "${BINARIES[@]}")
log "building ${BINARIES[*]} with Go $gover (CGO_ENABLED=0, vendored dependencies; about 10 minutes on 2 cores from nothing)"
(
  cd "$tree"
  unset GOFLAGS GOBIN GOOS GOARCH GO111MODULE GOPROXY GOCACHE GOENV KUBE_GIT_VERSION_FILE
  export GOROOT="$goroot" GOPATH="$tree/.go" CGO_ENABLED=0 HOME="$tree/.home" GOTOOLCHAIN=local
  export PATH="$goroot/bin:$tools:$PATH"
  # nice: other work on the machine (tests) keeps its share of the 2 cores.
  nice -n 10 make WHAT="${whats% }" >&2
) || die "the build failed (see above); the tree is kept in $tree"

rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin"
for b in "${BINARIES[@]}"; do
  [ -x "$tree/_output/bin/$b" ] || die "the build did not produce $b"
  cp "$tree/_output/bin/$b" "$out.tmp/bin/$b"
done
version=$("$out.tmp/bin/kube-apiserver" --version 2>&1) || die "the built kube-apiserver does not run: $version"
rm -rf "$out"
mv "$out.tmp" "$out"
log "built $bin in $(( $(date +%s) - started )) s: $version, go $gover; $(cd "$bin" && du -h "${BINARIES[@]}" | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//')"
echo "$bin"
