# lib.sh - helpers shared by the benchmark scripts (sourced, not run).
#
# The sourcing script sets PROG (its name) first; warn() appends to the
# script's NOTES array, which the report prints.

die() { echo "$PROG: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
NOTES=()
warn() { echo "[$(date +%H:%M:%S)] WARNING: $*" >&2; NOTES+=("WARNING: $*"); }

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }'; }
fmt_time() {  # seconds -> "12.3 ms" / "4.56 s"
  awk -v t="$1" 'BEGIN { if (t < 1) printf "%.1f ms", t * 1000; else printf "%.2f s", t }'
}
fmt_bytes() {  # bytes -> "1.23 MB (1234567 B)"
  awk -v b="$1" 'BEGIN {
    if (b >= 1e9) s = sprintf("%.2f GB", b / 1e9); else if (b >= 1e6) s = sprintf("%.2f MB", b / 1e6);
    else if (b >= 1e3) s = sprintf("%.1f kB", b / 1e3); else s = sprintf("%.0f B", b);
    printf "%s (%.0f B)", s, b }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "inf"; else if (a / b >= 100) printf "%.0f×", a / b; else printf "%.3f×", a / b }'; }
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
minmax() { python3 -c 'import sys; t = [float(x) for x in sys.argv[1:]]; print(min(t), max(t))' "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
avail_bytes() { df -B1 --output=avail "$1" | tail -1 | tr -d ' '; }
tree_bytes() { du -sb --apparent-size "$1" | cut -f1; }

# The processes a script started, name -> pid (the cleanup stops exactly these).
declare -A PIDS=()
stop_pids() {  # SIGTERM every process in PIDS, then SIGKILL what is left
  local n
  for n in "${!PIDS[@]}"; do kill -TERM "${PIDS[$n]}" 2>/dev/null || true; done
  sleep 0.3
  for n in "${!PIDS[@]}"; do
    kill -KILL "${PIDS[$n]}" 2>/dev/null || true
    wait "${PIDS[$n]}" 2>/dev/null || true
  done
}
umount_below() {  # DIR: lazily unmounts every mount below DIR, deepest first
  awk -v w="$1/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
print_notes() {  # the warnings of the run, as a Markdown list
  [[ ${#NOTES[@]} -gt 0 ]] || return 0
  echo
  echo "Warnings during the run:"
  echo
  local n
  for n in "${NOTES[@]}"; do echo "- ${n//$'\n'/ }"; done
}
