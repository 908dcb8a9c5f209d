#!/bin/sh
# The tools the test suite uses beyond Bun, installed from Debian's packages only when missing
# (npm runs this before `npm test`; safe to run every time):
#   sqlite3          (sqlite3)     the log is inspected with Debian's sqlite3 CLI, as operators do
#   systemd-analyze  (systemd)     test/systemd.test.ts verifies deploy/icr-receiver.service
#   python3          (python3)     test/systemd.test.ts listens on a real NOTIFY_SOCKET
#   promtool         (prometheus)  test/alerts.test.ts checks and unit-tests deploy/alerts.yml
#   haproxy          (haproxy)     test/haproxy.test.ts runs deploy/haproxy.cfg over two receivers
#   chromium         (chromium)    test/console-browser.test.ts drives it headless (playwright-core)
# systemd-analyze verify works without systemd as PID 1 (containers included): the package is only
# needed for the tool and the stock units (multi-user.target, …) the unit refers to. Likewise
# prometheus is only needed for promtool; where systemd is PID 1, Debian also enables and starts its
# server (on :9090): `systemctl disable --now prometheus` if unwanted. Containers do not start it.
# haproxy likewise: where systemd is PID 1 Debian starts its service on the stock
# /etc/haproxy/haproxy.cfg, which listens nowhere (`systemctl disable --now haproxy` if unwanted);
# the test runs its own in the foreground.
set -eu

missing=""
command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
# Debian installs it in /usr/sbin, which is not on every user's PATH; the test looks there too.
{ command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1 || missing="$missing haproxy"
# The browser tests launch this path, never a browser of playwright's own (none can be downloaded).
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "test prerequisites missing:$missing (run as root, or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "test prerequisites: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
