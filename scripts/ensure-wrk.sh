#!/bin/sh
# Make sure Debian's wrk (the HTTP load generator of bench.http) is installed; installs it
# with apt when absent. Exits non-zero when it cannot be installed.
set -e
present() { command -v wrk >/dev/null 2>&1; }
present && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "ensure-wrk: installing wrk" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
present && exit 0
echo "ensure-wrk: wrk is still missing" >&2
exit 1
