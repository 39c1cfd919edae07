#!/usr/bin/env bash
# Installs what affinity needs on a Debian 12 (bookworm) machine, and skips
# whatever is already there: PostgreSQL 15 (server + server-dev headers) and
# pgvector 0.8.0 built from Debian's source package. Idempotent.
#
# protoc is not needed: build.rs compiles the protos with protox (pure Rust).
set -euo pipefail

PG_MAJOR=15
PGVECTOR_VERSION=0.8.0

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  log "not root and no sudo: run this script as root"
  exit 1
fi

# Only Debian 12 is supported by this script; elsewhere say what is needed.
if ! grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
  cat >&2 <<MSG
install-deps: this script supports Debian 12 (bookworm) only.
On another system, install these yourself, then rerun the tests:
  - PostgreSQL ${PG_MAJOR} server (initdb, pg_ctl, postgres on PATH or in /usr/lib/postgresql/${PG_MAJOR}/bin)
  - pgvector >= ${PGVECTOR_VERSION} built for PostgreSQL ${PG_MAJOR} (https://github.com/pgvector/pgvector)
  - a Rust toolchain (cargo) and cargo-nextest
MSG
  exit 1
fi

PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin
PG_CONFIG=${PG_BIN}/pg_config
[ -x "$PG_CONFIG" ] || PG_CONFIG=$(command -v pg_config || true)

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    "${SUDO[@]}" apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

missing=()
dpkg -s "postgresql-${PG_MAJOR}" >/dev/null 2>&1 || missing+=("postgresql-${PG_MAJOR}")
dpkg -s "postgresql-server-dev-${PG_MAJOR}" >/dev/null 2>&1 || missing+=("postgresql-server-dev-${PG_MAJOR}")
command -v make >/dev/null 2>&1 || missing+=(make)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
else
  log "PostgreSQL ${PG_MAJOR} server and headers: present"
fi
PG_CONFIG=${PG_BIN}/pg_config

sharedir=$("$PG_CONFIG" --sharedir)
control="$sharedir/extension/vector.control"
have_version=""
if [ -f "$control" ]; then
  have_version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$control")
fi
if [ -n "$have_version" ] && [ "$(printf '%s\n%s\n' "$PGVECTOR_VERSION" "$have_version" | sort -V | head -n1)" = "$PGVECTOR_VERSION" ]; then
  log "pgvector ${have_version}: present"
else
  log "building pgvector ${PGVECTOR_VERSION} from Debian's source package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # A private sources list, so the system's apt configuration is never touched.
  mkdir -p "$work/lists/partial"
  echo "deb-src http://deb.debian.org/debian trixie main" > "$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists")
  "${SUDO[@]}" apt-get "${apt_opts[@]}" update -qq
  (cd "$work" && "${SUDO[@]}" apt-get "${apt_opts[@]}" source --download-only -qq pgvector)
  tarball=$(ls "$work"/pgvector_"${PGVECTOR_VERSION}".orig.tar.* 2>/dev/null | head -n1 || true)
  if [ -z "$tarball" ]; then
    log "pgvector_${PGVECTOR_VERSION}.orig.tar.* not found in Debian's source package; found: $(ls "$work")"
    exit 1
  fi
  mkdir -p "$work/src"
  tar -xf "$tarball" -C "$work/src" --strip-components=1
  make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" -j"$(nproc)" OPTFLAGS="" >/dev/null
  "${SUDO[@]}" make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
  log "pgvector ${PGVECTOR_VERSION}: installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install a Rust toolchain (rustup) first"
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
log "all dependencies present"
