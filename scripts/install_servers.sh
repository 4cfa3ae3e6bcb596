#!/usr/bin/env bash
# Debian's PostgreSQL, Redis and nginx for the production topology (make run-production,
# make test-production), installed only when missing: as root, or with sudo. Their packaged
# services are never used: scripts/run_production.py runs its own, with data under var/.
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
  echo "error: ${missing[*]} missing; install them as root (apt-get install ${missing[*]})" >&2; exit 1
fi
command -v apt-get >/dev/null || { echo "error: no apt-get; install ${missing[*]} by hand" >&2; exit 1; }
echo "Installing Debian's ${missing[*]}"
$sudo apt-get update -qq
# policy-rc.d 101: the packages' own services are not started (nothing of theirs is used).
policy=/usr/sbin/policy-rc.d
had_policy=false; [ -e $policy ] && had_policy=true
$had_policy || { printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null; $sudo chmod +x $policy; }
trap '$had_policy || $sudo rm -f $policy' EXIT
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for binary in /usr/bin/redis-server /usr/sbin/nginx; do
  [ -x $binary ] || { echo "error: $binary still missing after apt-get install" >&2; exit 1; }
done
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || { echo "error: PostgreSQL still missing" >&2; exit 1; }
