#!/bin/sh
# Make sure Debian's chromium and chromium-driver are installed for the dashboard's browser
# tests; installs them with apt when absent (never a browser download of its own). Exits
# non-zero when they cannot be installed: in CI a missing browser fails the run, never skips.
set -e
present() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }
present && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "ensure-chromium: installing chromium and chromium-driver" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
present && exit 0
echo "ensure-chromium: chromium or chromedriver is still missing in /usr/bin" >&2
exit 1
