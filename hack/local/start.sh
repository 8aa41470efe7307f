#!/usr/bin/env bash
# The local quick start (`npm start` after `hack/setup.sh`, as root): builds the example root
# filesystem, puts examples/basic.yaml into a machines directory and runs the agent on it, with
# everything under .cache/local/. Ctrl-C stops the agent; the guest keeps running, as it would
# on a node (`umlmon drain` shuts it down; start.sh prints the exact command).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
local_dir=$repo/.cache/local
machines=$local_dir/machines
state=$local_dir/state
images=$local_dir/images
umlmon=(node "$repo/src/cli/main.ts")

say() { printf '\033[1mumlmon:\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "the agent jails each UML kernel (mount namespace, chroot, its own uid), which needs root:"
  say "  run npm start as root (or with sudo)"
  exit 1
fi
if ! [ -x /usr/local/lib/umlmon/linux ] || ! [ -d node_modules/yaml ]; then
  say "umlmon's UML kernel or the npm dependencies are missing: run hack/setup.sh (as root) first"
  exit 1
fi

mkdir -p "$machines" "$state" "$images"
say "building the example root filesystem (busybox) into ${images#"$repo/"}/busybox.ext4"
hack/build-rootfs.sh "$images/busybox.ext4"
if ! ls "$machines"/*.yaml >/dev/null 2>&1; then
  cp examples/basic.yaml "$machines/basic.yaml"
  say "copied examples/basic.yaml into ${machines#"$repo/"}/"
fi

"${umlmon[@]}" check -f hack/local/config.yaml --machines-dir "$machines" --state-dir "$state" --image-root "$images" >&2

cat >&2 <<INFO

  The agent runs the machines in ${machines#"$repo/"}/ (edit them: state: Paused,
  add a disk or an interface, remove the file; the agent follows).

  status          ${machines#"$repo/"}/basic.status.yaml      (watch -n1 cat ...)
  events          ${machines#"$repo/"}/basic.events.log
  guest console   umlmon console --state-dir $state basic        (Ctrl-] detaches)
                  its log: ${state#"$repo/"}/machines/<umid>/console.log
  machines        umlmon ls --state-dir $state --machines-dir $machines
                  umlmon pause|resume|restart|backup --machines-dir $machines basic
  mconsole        umlmon mconsole --state-dir $state default/basic version
  health/metrics  curl http://127.0.0.1:9473/readyz  and  /metrics

  Ctrl-C stops the agent; the guest keeps running. To shut guests down:
                  umlmon drain --state-dir $state

INFO

status=0
"${umlmon[@]}" run -f hack/local/config.yaml --machines-dir "$machines" --state-dir "$state" --image-root "$images" || status=$?
say "agent stopped (exit $status); guests keep running. Stop them with:"
say "  umlmon drain --state-dir $state"
exit "$status"
