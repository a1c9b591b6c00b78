#!/usr/bin/env bash
# Boots a Debian kernel that has SCTP under qemu (software emulation, no KVM
# needed) with a throw-away initramfs, runs test commands inside it and exits 0
# only if the guest printed the PASS marker. Build hosts and CI have no SCTP
# kernel module, so this is the only place where kernel SCTP really runs.
#
# Usage: scripts/vm/run-kernel-tests.sh [options]
#   --bin PATH        copy an executable into the guest's /opt/bin (repeatable)
#   --run 'CMD'       guest shell command; all must exit 0 (repeatable, in order)
#   --deb NAME        extract a Debian package (and, with --deb-deps, its
#                     dependencies) into the image root (repeatable)
#   --deb-deps        also pull the --deb packages' Depends/Pre-Depends
#   --deb-alone NAME  extract a package without its dependencies, even
#                     with --deb-deps (one program of a package whose other
#                     programs pull in far too much) (repeatable)
#   --module NAME     load one more kernel module (deps resolved) (repeatable)
#   --share DIR       share a host directory read-write at /mnt/host (9p)
#   --timeout SECS    kill qemu after this long (default 600)
#   --no-default      skip building and running the project's kernel tests
# Without --no-default the script builds rserpool-net's test binaries
# statically and runs the kernel backend tests and the interop test.
# Environment: VM_CACHE (download cache, default target/vm-cache),
# VM_MEM (default 512), VM_KERNEL_PKG (default: what linux-image-amd64 names).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
CACHE="${VM_CACHE:-$ROOT/target/vm-cache}"
MEM="${VM_MEM:-512}"
TIMEOUT=600
PASS_MARKER="RSERPOOL-VM-RESULT: PASS"
FAIL_MARKER="RSERPOOL-VM-RESULT: FAIL"
# Only SCTP and its helpers by default; anything else is opt-in so that the
# image stays small and the boot fast.
MODULES=(sctp)
BINS=()
RUNS=()
DEBS=()
DEBS_ALONE=()
DEB_DEPS=0
SHARE=""
DEFAULT_TESTS=1

log() { echo "vm: $*" >&2; }
die() { echo "vm: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BINS+=("$2"); shift 2 ;;
    --run) RUNS+=("$2"); shift 2 ;;
    --deb) DEBS+=("$2"); shift 2 ;;
    --deb-deps) DEB_DEPS=1; shift ;;
    --deb-alone) DEBS_ALONE+=("$2"); shift 2 ;;
    --module) MODULES+=("$2"); shift 2 ;;
    --share) SHARE="$(cd "$2" && pwd)"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --no-default) DEFAULT_TESTS=0; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- host tools
# An ELF with a PT_INTERP header needs a dynamic loader the image lacks.
is_dynamic() {
  readelf -lW "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}
need=()
command -v readelf >/dev/null 2>&1 || need+=(binutils)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# Debian's plain busybox is dynamic; busybox-static replaces it.
if [ ! -x /bin/busybox ] || is_dynamic /bin/busybox; then need+=(busybox-static); fi
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v depmod >/dev/null 2>&1 || need+=(kmod)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# busybox-static ships /bin/busybox; a dynamic busybox would not run in the
# bare initramfs, so check rather than trust.
BUSYBOX=/bin/busybox
is_dynamic "$BUSYBOX" && die "$BUSYBOX is dynamically linked; install busybox-static"

mkdir -p "$CACHE/debs"

# apt-get download refuses to write outside the current directory, and
# re-downloading on every run would waste CI minutes: download by name once.
fetch_deb() { # name -> path of the .deb in the cache
  local name="$1" f
  f="$(ls "$CACHE/debs/${name}_"*.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$f" ]; then
    (cd "$CACHE/debs" && apt-get download -qq "$name" >/dev/null 2>&1) || {
      $SUDO apt-get update -qq
      (cd "$CACHE/debs" && apt-get download -qq "$name" >/dev/null)
    }
    f="$(ls "$CACHE/debs/${name}_"*.deb | head -n1)"
  fi
  echo "$f"
}

# --------------------------------------------------------------- the kernel
KPKG="${VM_KERNEL_PKG:-}"
if [ -z "$KPKG" ]; then
  if [ -f "$CACHE/kernel-pkg" ]; then
    KPKG="$(cat "$CACHE/kernel-pkg")"
  else
    KPKG="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
    if [ -z "$KPKG" ]; then
      $SUDO apt-get update -qq
      KPKG="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
    fi
    [ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 to a kernel package"
    echo "$KPKG" >"$CACHE/kernel-pkg"
  fi
fi
KDIR="$CACHE/$KPKG"
if [ ! -d "$KDIR/boot" ]; then
  log "downloading $KPKG"
  deb="$(fetch_deb "$KPKG")"
  rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
  dpkg-deb -x "$deb" "$KDIR.tmp"
  mv "$KDIR.tmp" "$KDIR"
fi
VMLINUZ="$(ls "$KDIR"/boot/vmlinuz-* | head -n1)"
KVER="${VMLINUZ##*/vmlinuz-}"
log "kernel $KVER"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rserpool-vm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------------ default test payload
if [ "$DEFAULT_TESTS" -eq 1 ]; then
  # shellcheck source=scripts/vm/project-tests.sh
  source "$ROOT/scripts/vm/project-tests.sh"
  add_project_tests   # appends to BINS, RUNS and MODULES
fi
[ ${#RUNS[@]} -gt 0 ] || die "nothing to run (give --run or drop --no-default)"
[ -n "$SHARE" ] && MODULES+=(virtio_pci 9pnet_virtio 9p)

# -------------------------------------------------------------- the initramfs
IMG="$WORK/root"
mkdir -p "$IMG"/{bin,sbin,proc,sys,dev,tmp,run,etc,opt/bin,mnt/host,lib/modules}
cp "$BUSYBOX" "$IMG/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ -e "$IMG/bin/$applet" ] || ln -s busybox "$IMG/bin/$applet"
done

# modprobe --show-depends prints the insmod lines in dependency order for the
# downloaded tree, so no busybox modprobe or module list needs maintaining.
depmod -b "$KDIR" "$KVER"
INSMODS="$WORK/insmod.list"
: >"$INSMODS"
for m in "${MODULES[@]}"; do
  modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}' >>"$INSMODS" ||
    die "module $m not found in $KPKG"
  grep -q . "$INSMODS" || die "module $m not found in $KPKG"
done
i=0
LOADS="$WORK/load.list"
: >"$LOADS"
while read -r ko; do
  base="$(basename "$ko")"
  base="${base%.xz}"; base="${base%.zst}"; base="${base%.ko}"
  grep -qx "$base" "$LOADS.names" 2>/dev/null && continue
  echo "$base" >>"$LOADS.names"
  dst="$IMG/lib/modules/$(printf '%03d' $i)-$base.ko"
  case "$ko" in
    *.xz) xz -dc "$ko" >"$dst" ;;
    *.zst) zstd -qdc "$ko" >"$dst" ;;
    *) cp "$ko" "$dst" ;;
  esac
  i=$((i + 1))
done <"$INSMODS"
log "modules: $(tr '\n' ' ' <"$LOADS.names")"

for b in "${BINS[@]}"; do
  [ -x "$b" ] || die "--bin $b is not an executable"
  if is_dynamic "$b" && [ ${#DEBS[@]} -eq 0 ]; then
    die "$b is dynamically linked; the initramfs has no libc (build it with -C target-feature=+crt-static)"
  fi
  cp "$b" "$IMG/opt/bin/"
done

if [ ${#DEBS[@]} -gt 0 ]; then
  pkgs=("${DEBS[@]}")
  if [ "$DEB_DEPS" -eq 1 ]; then
    mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "${DEBS[@]}" | awk '/^[a-z0-9]/{print $1}' | sort -u)
  fi
  pkgs+=("${DEBS_ALONE[@]}")
  for p in "${pkgs[@]}"; do
    log "adding package $p"
    dpkg-deb -x "$(fetch_deb "$p")" "$IMG"
  done
fi

cat >"$IMG/init" <<'EOF'
#!/bin/sh
# PID 1 of the test VM: mount, load modules, run the plan, report, power off.
export PATH=/opt/bin:/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
ip link set lo up
fail=0
for ko in /lib/modules/*.ko; do
  insmod "$ko" || { echo "vm-guest: insmod $ko failed"; fail=1; }
done
if [ -f /etc/vm-share ]; then
  mount -t 9p -o trans=virtio,version=9p2000.L hostshare /mnt/host ||
    { echo "vm-guest: 9p mount failed"; fail=1; }
fi
[ -d /proc/sys/net/sctp ] || { echo "vm-guest: no SCTP in this kernel"; fail=1; }
if [ "$fail" -eq 0 ]; then
  n=0
  while IFS= read -r cmd; do
    n=$((n + 1))
    echo "vm-guest: step $n: $cmd"
    t0=$(cut -d' ' -f1 /proc/uptime)
    sh -c "$cmd"
    rc=$?
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "vm-guest: step $n exit $rc (${t0}s -> ${t1}s uptime)"
    [ "$rc" -eq 0 ] || { fail=1; break; }
  done </etc/vm-plan
fi
if [ "$fail" -eq 0 ]; then
  echo "RSERPOOL-VM-RESULT: PASS"
else
  echo "RSERPOOL-VM-RESULT: FAIL"
fi
sync
poweroff -f
EOF
chmod +x "$IMG/init"
printf '%s\n' "${RUNS[@]}" >"$IMG/etc/vm-plan"
[ -n "$SHARE" ] && touch "$IMG/etc/vm-share"

INITRD="$WORK/initrd.cpio.gz"
(cd "$IMG" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$INITRD"
log "initramfs $(du -h "$INITRD" | cut -f1)"

# -------------------------------------------------------------------- boot
qemu_args=(
  -machine q35,accel=tcg -cpu max -m "$MEM" -smp 1
  -nographic -no-reboot -nic none
  -kernel "$VMLINUZ" -initrd "$INITRD"
  -append "console=ttyS0 panic=-1 quiet loglevel=4"
)
if [ -n "$SHARE" ]; then
  qemu_args+=(-virtfs "local,path=$SHARE,mount_tag=hostshare,security_model=none,id=hostshare")
fi
LOGF="$CACHE/last-boot.log"
log "booting (log: $LOGF)"
start=$(date +%s)
set +e
# No stdin: qemu's -nographic serial would otherwise read the CI's terminal.
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 "${qemu_args[@]}" </dev/null 2>&1 |
  tr -d '\r' | tee "$LOGF"
qrc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
log "qemu exited with $qrc after $((end - start)) s"
if grep -qx "$PASS_MARKER" "$LOGF"; then
  log "PASS"
  exit 0
fi
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  log "FAIL: timed out after $TIMEOUT s"
elif grep -qx "$FAIL_MARKER" "$LOGF"; then
  log "FAIL: a guest step failed (see above)"
else
  log "FAIL: no result marker on the console"
fi
exit 1
