#!/bin/sh
# Tools the test suite needs beyond Bun, installed only when missing (safe to run on every CI run):
#   systemd-analyze  (Debian package systemd)  test/systemd.test.ts verifies deploy/icr-receiver.service
#   python3          (Debian package python3)  test/systemd.test.ts listens on a real NOTIFY_SOCKET
# systemd-analyze verify works without systemd as PID 1 (containers included): the package is only
# needed for the tool and the stock units (multi-user.target, …) the unit refers to.
set -eu

missing=""
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ci-prereqs: missing:$missing (run as root, or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "ci-prereqs: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
