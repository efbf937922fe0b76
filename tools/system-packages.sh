#!/usr/bin/env bash
# The Debian packages the tests need, installed by `make test` (so the README's two commands are the whole set-up).
# As root: apt-get installs what is missing. Otherwise: say which are missing and how to install them, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
# slapd, ldap-utils: the LDAP enrolment tests start a real directory. chromium: the browser tests.
# bubblewrap: students' servers run in a private mount namespace (root mode; setpriv is util-linux's).
# z2jh tier: libpq-dev, gcc, python3-dev build the hub image's psycopg2 pin; openssl makes the fake API server's CA;
# util-linux gives unshare/setpriv to the process kubelet. postgresql: the hub-request database tests start a real
# server of their own (initdb/pg_ctl in a temp dir, as nobody; the packaged cluster is not used).
PACKAGES=(slapd ldap-utils chromium bubblewrap libpq-dev gcc python3-dev openssl util-linux postgresql)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "make test needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}   (or run make test as root)" >&2
    exit 2
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
  # As root every student is a system user whose server runs the venv inside this checkout: let other accounts
  # traverse (not list) the folders above it, as a real install under /opt would allow.
  d="$PWD"
  while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
fi
