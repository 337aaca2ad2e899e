# shellcheck shell=bash
# systemd_master DIR: the Debian bookworm minbase+systemd master whose boot
# record_boot.sh records and storm_bench.sh serves (sourced after
# tests/integration/lib.sh and boot_lib.sh). Both build it the same way, so its objects have
# the same ids in both stores. Returns 1 when the cached tree is missing and
# cannot be built.
systemd_master() {
  local cached master=$1
  cached=$(systemd_cache) || return 1
  cp -a "$cached" "$master"
  cat > "$master/etc/systemd/system/dim-record.service" <<'UNIT'
[Unit]
Description=dim boot record: multi-user.target reached
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/console
ExecStart=/bin/sh -c 'mkdir -p /var/lib/dim-test && date > /var/lib/dim-test/reached && sync; echo "dim-record: multi-user.target reached"'
ExecStartPost=/bin/systemctl start --no-block --job-mode=replace-irreversibly poweroff.target
[Install]
WantedBy=multi-user.target
UNIT
  # No udev in minbase: the serial getty would wait 90 s for its device.
  ln -sf /dev/null "$master/etc/systemd/system/serial-getty@ttyS0.service"
  mkdir -p "$master/etc/systemd/system/multi-user.target.wants"
  ln -sf ../dim-record.service "$master/etc/systemd/system/multi-user.target.wants/dim-record.service"
  : > "$master/etc/fstab"
  # The journal in RAM (/run/log/journal), as diskless sites keep it: a
  # persistent one sends its whole file (6.4 MB in this boot) to the node's
  # overlay on the server at every boot.
  mkdir -p "$master/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\n' > "$master/etc/systemd/journald.conf.d/dim-volatile.conf"
}
