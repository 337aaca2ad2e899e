#!/usr/bin/env bash
# boot_bench.sh - how long does a diskless node take from linuxrc's start to
# the exec of the master's /sbin/init (issue 6's goal: at most 1 s)?
#
# Boots Debian's cloud kernel under qemu (TCG) with dim initrds, the node's
# root served by imaged on the host, and reads linuxrc's timing marks (guest
# seconds) from the console. Two masters: a busybox one (16 entries) and,
# when the test cache has it, the Debian bookworm minbase tree (~5,300
# entries) with the same tiny init. Given several rootfs-fuse binaries
# (--fuse, e.g. an older build), each gets its own initrd and their boots are
# interleaved, so a change in the host's load hits all of them alike.
# With --tls each boot is made twice, interleaved: rootfs-fuse speaking
# plain HTTP (dim.server=http://, imaged's plain_listen with plain_serves =
# nodes) and TLS (dim.server=https://, checked with the site CA the initrd
# holds), against one imaged.
# Timings are reported, never asserted. Needs root, qemu, busybox-static.
set -euo pipefail

PROG=${0##*/}
usage() {
  cat <<EOF
usage: $PROG [--runs N] [--fuse PATH]... [--no-debian] [--tls] [--cpu MODEL]

  --runs N      boots per master and binary (default 5); medians and ranges
  --fuse PATH   a rootfs-fuse binary to compare (repeatable; default: the
                build tree's rootfs-fuse/rootfs-fuse)
  --no-debian   only the busybox master
  --tls         boot each over plain HTTP and over TLS (a site CA, dimctl ca)
  --cpu MODEL   qemu's -cpu (e.g. max: with RDRAND, which seeds the guest
                kernel's random pool at once, as on real hardware; qemu's
                default CPU has none, and getrandom() then waits at boot)
Environment: DIM_BUILD_DIR (default ./build), BENCH_OUT (Markdown report,
default /var/tmp/dim-bench/boot_bench.md).
EOF
}

runs=5 debian=1 fuses=() tls=0 cpu=()
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --fuse) fuses+=("$(realpath "$2")"); shift 2 ;;
    --no-debian) debian=0; shift ;;
    --tls) tls=1; shift ;;
    --cpu) cpu=(-cpu "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
# The boot tests' fixtures: a private TEST_TMP with cleanup, the kernel, the
# busybox master, the store and imaged.
# shellcheck source=../../tests/integration/lib.sh
source "$here/../../tests/integration/lib.sh"
# shellcheck source=../../tests/integration/boot_lib.sh
source "$here/../../tests/integration/boot_lib.sh"
((${#fuses[@]})) || fuses=("$BOOT_FUSE")
out=${BENCH_OUT:-/var/tmp/dim-bench/boot_bench.md}
mkdir -p "$(dirname "$out")"

boot_requirements
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DIM_SERVER=http://127.0.0.1:$port
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$port"
masters=(tiny)
if ((debian)) && [[ -d $DIM_TEST_CACHE/bookworm-minbase ]]; then
  log "Debian master: minbase with the busybox test init"
  cp -a "$DIM_TEST_CACHE/bookworm-minbase" "$TEST_TMP/deb"
  make_master "$TEST_TMP/debinit" deb
  cp -a "$TEST_TMP/debinit/sbin/init" "$TEST_TMP/deb/sbin/init"
  cp -a /bin/busybox "$TEST_TMP/deb/bin/busybox"
  "$DIMCTL" image import deb "$TEST_TMP/deb" -m "Debian minbase" > /dev/null
  masters+=(deb)
fi
# modes: how rootfs-fuse reaches the server; url[mode]: dim.server= of the boot.
modes=(plain)
declare -A url=([plain]=http://10.0.2.2:$port)
extra="boot_keys = any"
initrd_tls=()
if ((tls)); then
  ca=$TEST_TMP/ca
  "$DIMCTL" ca init --dir "$ca" > /dev/null
  # 10.0.2.2 is the host as the guest's user-mode network sees it.
  "$DIMCTL" ca issue host --ip 127.0.0.1 --ip 10.0.2.2 --dir "$ca" --out "$TEST_TMP" > /dev/null
  "$DIMCTL" ca issue dimctl --ip 127.0.0.1 --dir "$ca" --out "$TEST_TMP" > /dev/null
  pport=$(free_port)
  extra+=$'\n'"tls_cert = $TEST_TMP/host.crt"$'\n'"tls_key = $TEST_TMP/host.key"$'\n'"tls_ca = $ca/ca.crt"
  extra+=$'\n'"plain_listen = 127.0.0.1:$pport"$'\n'"plain_serves = nodes"
  export BOOT_EXTRA_ADDRESSES=10.0.2.2:$pport
  export DIM_SERVER=https://127.0.0.1:$port DIM_TLS_CA=$ca/ca.crt
  export DIM_TLS_CERT=$TEST_TMP/dimctl.crt DIM_TLS_KEY=$TEST_TMP/dimctl.key
  boot_script_url=http://127.0.0.1:$pport
  modes=(plain tls)
  url=([plain]=http://10.0.2.2:$pport [tls]=https://10.0.2.2:$port)
  initrd_tls=(--tls-ca "$ca/ca.crt")
fi
boot_script_url=${boot_script_url:-$DIM_SERVER}
start_imaged "127.0.0.1:$port" "$extra"
for m in "${masters[@]}"; do "$DIMCTL" push "$m" > /dev/null; done

for i in "${!fuses[@]}"; do
  "$DIMCTL" initrd build --kernel "$BOOT_KDIR" --rootfs-fuse "${fuses[i]}" "${initrd_tls[@]}" \
    -o "$TEST_TMP/initrd-$i.img" > /dev/null
done
kernel=$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER

# boot_once MASTER I RUN MODE: one boot with initrd I, rootfs-fuse reaching
# the server as MODE says; prints the marks as
# "linuxrc_total rootfs_total exec_to_main" (guest seconds).
boot_once() {
  local m=$1 i=$2 r=$3 mode=$4 args console=$TEST_TMP/$1-$2-$3-$4.console
  args=$(curl -fsS "$boot_script_url/v1/boot/nodes/$BOOT_NODE.ipxe" | sed -n 's/^kernel [^ ]* initrd=[^ ]* //p' | sed 's/ BOOTIF=.*//')
  args=$(sed "s|dim.server=[^ ]*|dim.server=${url[$mode]}|" <<< "$args")
  timeout --kill-after=5 240 qemu-system-x86_64 -accel tcg "${cpu[@]}" -m 512 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$TEST_TMP/initrd-$i.img" -append "$args" \
    -netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC,romfile=" \
    < /dev/null > "$console" 2>&1 || true
  grep -aq "dim-test: $m init runs as pid 1" "$console" || die "boot $m/$i/$r failed: $(tail -20 "$console")"
  python3 - "$console" <<'PY'
import re, sys
marks = []
for line in open(sys.argv[1], errors="replace"):
    # linuxrc's "dim: [  T] step" and rootfs-fuse's "rootfs-fuse: [  T] step"
    m = re.search(r"(dim|rootfs-fuse): \[\s*([\d.]+)\]\s+(.*?)\s*$", line)
    if m:
        label = m.group(3) if m.group(1) == "dim" else "rootfs-fuse: " + m.group(3)
        marks.append((label, float(m.group(2))))
def t(prefix):
    return next(v for n, v in marks if n.startswith(prefix))
print(f"{t('exec /sbin/init') - t('linuxrc start'):.3f} {t('mounted') - t('server'):.3f} "
      f"{t('rootfs-fuse: main') - t('rootfs-fuse: exec'):.3f}")
PY
}

declare -A total rootfs loader
for m in "${masters[@]}"; do
  "$DIMCTL" node set-image "$BOOT_NODE" "$m" > /dev/null
  "$DIMCTL" node provision "$BOOT_NODE" > /dev/null
  for ((r = 1; r <= runs; r++)); do
    for i in "${!fuses[@]}"; do
      for mode in "${modes[@]}"; do
        read -r a b c < <(boot_once "$m" "$i" "$r" "$mode")
        total[$m,$i,$mode]+="$a " rootfs[$m,$i,$mode]+="$b " loader[$m,$i,$mode]+="$c "
        log "$m, rootfs-fuse #$i, $mode, run $r: linuxrc ${a} s (rootfs-fuse ${b} s, of which exec->main ${c} s); load $(cut -d' ' -f1 /proc/loadavg)"
      done
    done
  done
done

stat() {  # "median (min-max)" of the numbers in $1
  python3 -c 'import statistics, sys; v=[float(x) for x in sys.argv[1].split()]; print(f"{statistics.median(v):.2f} s ({min(v):.2f}–{max(v):.2f})")' "$1"
}
{
  echo "# boot_bench: linuxrc start -> exec /sbin/init ($runs boots each, guest seconds under TCG)"
  echo
  echo "Host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end; kernel $BOOT_KVER; qemu ${cpu[*]:-default CPU}."
  for i in "${!fuses[@]}"; do echo "- rootfs-fuse #$i: ${fuses[i]}"; done
  echo
  echo "| master | rootfs-fuse | node path | linuxrc start → exec init | server found → root mounted | exec → main() |"
  echo "|---|---|---|---|---|---|"
  for m in "${masters[@]}"; do
    for i in "${!fuses[@]}"; do
      for mode in "${modes[@]}"; do
        echo "| $m | #$i | $mode | $(stat "${total[$m,$i,$mode]}") | $(stat "${rootfs[$m,$i,$mode]}") | $(stat "${loader[$m,$i,$mode]}") |"
      done
    done
  done
  echo
  echo "Marks of the last boot of each (guest seconds since the kernel started):"
  for m in "${masters[@]}"; do
    for i in "${!fuses[@]}"; do
      for mode in "${modes[@]}"; do
        echo
        echo "$m, rootfs-fuse #$i, $mode:"
        echo '```'
        grep -a 'dim: \[\|rootfs-fuse: \[' "$TEST_TMP/$m-$i-$runs-$mode.console" | sed 's/.*\(dim: \[\|rootfs-fuse: \[\)/\1/'
        echo '```'
      done
    done
  done
} | tee "$out"
log "report: $out"
