#!/usr/bin/env bash
# Installs what the local Kafka broker and the local Marquez need when it is missing: a JDK and
# Maven (both), PostgreSQL's server (Marquez; not needed when MARQUEZ_URL names a running one).
# Debian/Ubuntu with apt as root; elsewhere it says what to install and stops.
set -euo pipefail

have_initdb() {  # Debian puts initdb/pg_ctl only under /usr/lib/postgresql/<version>/bin
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
# javac too: Marquez is compiled from source (Maven's compiler plugin needs a JDK, and
# Debian's maven package brings only a JRE)
{ command -v java && command -v javac; } >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -n "${MARQUEZ_URL:-}" ] || have_initdb || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing: ${missing[*]} — install them (Java 17+, Maven 3, Python venv, PostgreSQL" \
    "server) and retry" >&2
  exit 1
fi
