#!/usr/bin/env bash
# A real STAC API for tests: stac-fastapi-pgstac on PostgreSQL + PostGIS, all on 127.0.0.1.
#
#   .ci/pgstac.sh install
#       Debian packages (PostgreSQL 15 + PostGIS 3, via apt-get when missing) and a separate
#       virtual environment for the server ($PGSTAC_VENV, default .ci/.pgstac-venv).
#       Idempotent: a second run with everything in place takes well under a second.
#       Serialised with flock on $PGSTAC_VENV.lock (parallel test workers).
#       Exit status 3: the Debian packages are missing and cannot be installed here (not
#       root and no passwordless sudo, or apt-get failed); the reason is on stderr.
#   .ci/pgstac.sh start STATE_DIR [COLLECTIONS.ndjson [ITEMS.ndjson]]
#       A throw-away database cluster in STATE_DIR (fsync off), pgstac migrated, the
#       collections and items loaded (upsert), the API started on a free port. The last
#       line on stdout is the API's URL, e.g. http://127.0.0.1:45123
#   .ci/pgstac.sh load STATE_DIR COLLECTIONS.ndjson [ITEMS.ndjson]
#       Load more collections / items into a running server.
#   .ci/pgstac.sh stop STATE_DIR
#       Stop the API and the database started in STATE_DIR and delete STATE_DIR.
#
# Versions seen working together (see ../shared/notes/stac-servers.md):
# stac-fastapi-pgstac 7.2.0, pypgstac 0.10.0 (pgstac schema 0.10.0), PostgreSQL 15, PostGIS 3.3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGSTAC_VENV="${PGSTAC_VENV:-$ROOT/.ci/.pgstac-venv}"
PG_VERSION="${PG_VERSION:-15}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/$PG_VERSION/bin}"
PYTHON="${PYTHON:-python3}"
SERVER_PKGS=("stac-fastapi-pgstac[server]==7.2.0" "pypgstac[psycopg]==0.10.0")
APT_PKGS=("postgresql-$PG_VERSION" "postgresql-$PG_VERSION-postgis-3" "postgresql-$PG_VERSION-postgis-3-scripts")

say() { echo "pgstac.sh: $*" >&2; }
die() { say "$*"; exit 1; }

have_debian_packages() {
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] &&
        [[ -f "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ]]
}

install_debian_packages() {
    have_debian_packages && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            say "PostgreSQL $PG_VERSION + PostGIS 3 are not installed and this user cannot install them (not root, no passwordless sudo): apt-get install ${APT_PKGS[*]}"
            exit 3
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        say "PostgreSQL $PG_VERSION + PostGIS 3 are not installed and there is no apt-get here (need Debian packages ${APT_PKGS[*]})"
        exit 3
    fi
    local had_server=0
    [[ -x "$PG_BIN/postgres" ]] && had_server=1
    say "installing ${APT_PKGS[*]} with apt-get"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
       ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${APT_PKGS[@]}" >&2; then
        say "apt-get could not install ${APT_PKGS[*]}: no package mirror reachable, or no such packages for this distribution"
        exit 3
    fi
    # Installing the server package may create and start Debian's default cluster (port
    # 5432). The tests use their own cluster: stop the one this install started.
    if [[ $had_server -eq 0 ]] && command -v pg_ctlcluster >/dev/null; then
        "${sudo[@]}" pg_ctlcluster "$PG_VERSION" main stop >/dev/null 2>&1 || true
    fi
    have_debian_packages || { say "apt-get ran but $PG_BIN/initdb or postgis.control is still missing"; exit 3; }
}

install_server_venv() {
    local marker="$PGSTAC_VENV/.installed"
    local want="${SERVER_PKGS[*]}"
    if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$PGSTAC_VENV/bin/uvicorn" ]]; then
        return 0
    fi
    say "creating the server environment $PGSTAC_VENV (${SERVER_PKGS[*]})"
    rm -rf "$PGSTAC_VENV"
    "$PYTHON" -m venv "$PGSTAC_VENV"
    # The project's constraints (torch pinned to the CPU wheel) apply here too; the server
    # does not need torch, so they never bite.
    "$PGSTAC_VENV/bin/pip" install -q --disable-pip-version-check \
        -c "$ROOT/.ci/constraints.txt" "${SERVER_PKGS[@]}" >&2
    echo "$want" > "$marker"
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Run a PostgreSQL server binary as the cluster's owner: PostgreSQL refuses to run as root.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

dsn() {  # dsn STATE_DIR
    local state="$1"
    echo "postgresql://postgres:$(cat "$state/password")@127.0.0.1:$(cat "$state/pg.port")/pgstac"
}

load() {  # load STATE_DIR COLLECTIONS [ITEMS]
    local state="$1" collections="${2:-}" items="${3:-}"
    if [[ -n "$collections" ]]; then
        "$PGSTAC_VENV/bin/pypgstac" load collections "$collections" --dsn "$(dsn "$state")" --method upsert >&2
    fi
    if [[ -n "$items" ]]; then
        "$PGSTAC_VENV/bin/pypgstac" load items "$items" --dsn "$(dsn "$state")" --method upsert >&2
    fi
}

start() {  # start STATE_DIR [COLLECTIONS [ITEMS]]
    local state="$1"
    [[ -x "$PGSTAC_VENV/bin/uvicorn" ]] || die "the server environment is missing: run $0 install first"
    have_debian_packages || die "PostgreSQL/PostGIS are missing: run $0 install first"
    [[ -e "$state/pgdata" ]] && die "$state already holds a cluster: stop it first ($0 stop $state)"
    mkdir -p "$state/sock"
    state="$(cd "$state" && pwd)"
    local pg_port api_port password
    pg_port="$(free_port)"
    api_port="$(free_port)"
    password="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')"
    echo "$password" > "$state/password"
    echo "$pg_port" > "$state/pg.port"
    chmod 600 "$state/password"
    if [[ $(id -u) -eq 0 ]]; then
        chmod 755 "$state"
        chown postgres "$state/sock"
        install -o postgres -m 600 "$state/password" "$state/pwfile"
        install -d -o postgres "$state/pgdata"
        touch "$state/pg.log" && chown postgres "$state/pg.log"
    else
        cp "$state/password" "$state/pwfile"
    fi
    as_pg "$PG_BIN/initdb" -D "$state/pgdata" -U postgres --pwfile="$state/pwfile" \
        --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$state/pwfile"
    # Loopback only; a private socket folder so no system socket directory is needed.
    as_pg "$PG_BIN/pg_ctl" -D "$state/pgdata" -l "$state/pg.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $state/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null
    PGPASSWORD="$password" "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres pgstac
    "$PGSTAC_VENV/bin/pypgstac" migrate --dsn "$(dsn "$state")" >&2
    load "$state" "${2:-}" "${3:-}"
    # The package's own run() binds 0.0.0.0: start uvicorn on loopback instead.
    (
        cd "$state"
        PGUSER=postgres PGPASSWORD="$password" PGHOST=127.0.0.1 PGPORT="$pg_port" PGDATABASE=pgstac \
        POSTGRES_USER=postgres POSTGRES_PASS="$password" POSTGRES_HOST_READER=127.0.0.1 \
        POSTGRES_HOST_WRITER=127.0.0.1 POSTGRES_PORT="$pg_port" POSTGRES_DBNAME=pgstac \
        nohup "$PGSTAC_VENV/bin/uvicorn" stac_fastapi.pgstac.app:create_app --factory \
            --host 127.0.0.1 --port "$api_port" --log-level warning \
            </dev/null >"$state/api.log" 2>&1 &
        echo $! > "$state/api.pid"
    )
    local url="http://127.0.0.1:$api_port"
    echo "$url" > "$state/url"
    if ! "$PGSTAC_VENV/bin/python" - "$url" <<'PY'
import sys, time, urllib.request
url = sys.argv[1]
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url + "/_mgmt/ping", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
    then
        say "the API did not answer on $url/_mgmt/ping within 60 s; its log:"
        tail -n 30 "$state/api.log" >&2 || true
        stop "$state"
        exit 1
    fi
    echo "$url"
}

stop() {  # stop STATE_DIR
    local state="$1"
    [[ -d "$state" ]] || return 0
    if [[ -f "$state/api.pid" ]]; then
        local pid
        pid="$(cat "$state/api.pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    if [[ -f "$state/pgdata/postmaster.pid" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$state/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$state"
}

cmd="${1:-}"
case "$cmd" in
    install)
        # Parallel test workers (pytest -n) may install at once: one at a time.
        if command -v flock >/dev/null; then
            exec 9>"$PGSTAC_VENV.lock"
            flock 9
        fi
        install_debian_packages
        install_server_venv
        ;;
    start)
        [[ $# -ge 2 ]] || die "usage: $0 start STATE_DIR [COLLECTIONS.ndjson [ITEMS.ndjson]]"
        start "$2" "${3:-}" "${4:-}"
        ;;
    load)
        [[ $# -ge 3 ]] || die "usage: $0 load STATE_DIR COLLECTIONS.ndjson [ITEMS.ndjson]"
        load "$2" "$3" "${4:-}"
        ;;
    stop)
        [[ $# -ge 2 ]] || die "usage: $0 stop STATE_DIR"
        stop "$2"
        ;;
    *)
        die "usage: $0 install | start STATE_DIR [COLLECTIONS.ndjson [ITEMS.ndjson]] | load STATE_DIR COLLECTIONS.ndjson [ITEMS.ndjson] | stop STATE_DIR"
        ;;
esac
