#!/usr/bin/env bash
# Builds a tiny ext4 root filesystem from Debian's busybox-static, with no downloads.
#   hack/build-rootfs.sh OUT.img [SIZE_MB]
# The guest's init mounts /proc, reports "umlmon-guest: booted" through /proc/mconsole (UML's
# notify socket relays it to the agent as a guest message), and turns ctrl-alt-del (mconsole
# `cad`) into a clean power-off at once (sync, read-only root, poweroff -f: busybox's own
# shutdown path would sleep 2-3 s between its steps), so graceful shutdown ends the kernel.
# The console (con0, `umlmon console`) has a root shell on it, respawned when it exits, with the
# console as its controlling terminal (busybox cttyhack) so that Ctrl-C and job control work.
# Kernel command line options it reads (the tests use them; /proc/cmdline keeps them):
#   guest.ip=IFACE,ADDR/PREFIX   bring IFACE up with that address (repeatable)
#   guest.cmd                    run commands from a disk: whenever a disk appears as ubd15
#                                (/dev/ubdp), its text (up to 4 KiB, NUL-padded) is run with sh and
#                                the output reported as "umlmon-guest: ran: <output>"
# The output is rebuilt only when this script changed since it was made (cache key beside it).
set -euo pipefail
out=${1:?usage: build-rootfs.sh OUT.img [SIZE_MB]}
size_mb=${2:-16}
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
key="$(sha256sum "$self" | cut -c1-16)-$size_mb"
if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then exit 0; fi

busybox=/bin/busybox
[ -x "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q static || busybox=$(command -v busybox.static || true)
[ -n "$busybox" ] && [ -x "$busybox" ] || { echo "build-rootfs: busybox-static is not installed (hack/setup.sh installs it)" >&2; exit 1; }
command -v mkfs.ext4 >/dev/null || { echo "build-rootfs: mkfs.ext4 missing (e2fsprogs)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,root,mnt,usr/bin,usr/sbin,var/log}
cp "$busybox" "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
  case "$app" in busybox) ;; *) ln -sf /bin/busybox "$root/bin/$app" ;; esac
done
ln -sf /bin/busybox "$root/sbin/init"
ln -sf /bin/busybox "$root/init"

cat > "$root/etc/inittab" <<'INITTAB'
::sysinit:/etc/rc
::respawn:/etc/console-shell
::ctrlaltdel:/etc/powerdown
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
INITTAB
cat > "$root/etc/powerdown" <<'POWERDOWN'
#!/bin/sh
# ctrl-alt-del: power off now, with the disks consistent.
sync
umount -a -r 2>/dev/null
mount -o remount,ro / 2>/dev/null
sync
poweroff -f
POWERDOWN
chmod +x "$root/etc/powerdown"
cat > "$root/etc/console-shell" <<'SHELL'
#!/bin/sh
# A login shell on the console, in a session of its own (setsid: cttyhack can then make the
# console its controlling terminal). The pause bounds the respawn rate should its input end.
/bin/setsid /bin/cttyhack /bin/sh -l
sleep 1
SHELL
chmod +x "$root/etc/console-shell"
cat > "$root/etc/profile" <<'PROFILE'
export PS1='\h:\w# ' HOME=/root TERM=${TERM:-vt100}
cd /root
PROFILE
cat > "$root/etc/rc" <<'RC'
#!/bin/sh
mount -t proc proc /proc
mount -o remount,rw / 2>/dev/null
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
hostname umlguest
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    guest.ip=*,*)
      spec=${arg#guest.ip=}; ifc=${spec%%,*}; addr=${spec#*,}
      ip link set "$ifc" up && ip addr add "$addr" dev "$ifc" ;;
    guest.cmd)
      ( last=""
        while :; do
          if [ -b /dev/ubdp ]; then
            script=$(head -c 4096 /dev/ubdp | tr -d '\000')
            if [ -n "$script" ] && [ "$script" != "$last" ]; then
              last=$script
              out=$(sh -c "$script" 2>&1 | tr '\n' ' ')
              echo "umlmon-guest: ran: $out" > /proc/mconsole
            fi
          else
            last=""
          fi
          sleep 0.2
        done ) &
      ;;
  esac
done
echo "umlmon-guest: booted" > /proc/mconsole
RC
chmod +x "$root/etc/rc"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"

tmp="$out.tmp.$$"
rm -f "$tmp"
mkfs.ext4 -q -F -L umlroot -O ^has_journal -d "$root" "$tmp" "${size_mb}M"
mv -f "$tmp" "$out"
echo "$key" > "$out.key"
