# common.sh — shared by scripts/test.sh, scripts/demo.sh and bench/: install
# what is missing, build, and run a throwaway PostgreSQL 15 cluster as the
# postgres user.  Source it; it defines functions and sets no traps itself.

# TVDB_PGBIN lets a second copy of PostgreSQL (its own lib and share) host a
# parallel build; the default is Debian's.
PGBIN=${TVDB_PGBIN:-/usr/lib/postgresql/15/bin}
export PG_CONFIG=$PGBIN/pg_config
TVDB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

APT_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap
              libcurl4-openssl-dev libcmark-gfm-dev libcmark-gfm-extensions-dev
              libmicrohttpd-dev libpq-dev pgtap make gcc curl python3"

tvdb_install_deps() {   # [package...]: these instead of tvdb's own
    local missing=()
    for p in ${*:-$APT_PACKAGES}; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages and not root: run as root, or apt-get install ${missing[*]}" >&2
        return 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

tvdb_build() {
    echo "== building and installing tvdb"
    make -C "$TVDB_ROOT" -s -j2 >/dev/null
    make -C "$TVDB_ROOT" -s install >/dev/null
}

# The machine a benchmark ran on, for its report (bench/*).
tvdb_machine() {
    echo "$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
         "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)"
}

# Run a command as the postgres user (PostgreSQL refuses to run as root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# tvdb_cluster_start [extra postgresql.conf lines...]
# Starts a cluster in a fresh directory on a free port; exports PGHOST,
# PGPORT, PGUSER and TVDB_PGDATA.
tvdb_cluster_start() {
    TVDB_CLUSTER_DIR=$(mktemp -d /tmp/tvdb-cluster.XXXXXX)
    chmod 755 "$TVDB_CLUSTER_DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$TVDB_CLUSTER_DIR"
    export TVDB_PGDATA=$TVDB_CLUSTER_DIR/data
    as_pg "$PGBIN/initdb" -D "$TVDB_PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "include_if_exists = 'port.conf'"   # written below, per attempt
        echo "unix_socket_directories = '$TVDB_CLUSTER_DIR'"
        echo "shared_preload_libraries = 'pg_cron,tvdb'"
        echo "cron.database_name = 'postgres'"
        echo "max_connections = 200"
        echo "fsync = off"
        echo "log_min_messages = warning"
        for line in "$@"; do echo "$line"; done
    } | as_pg tee -a "$TVDB_PGDATA/postgresql.conf" >/dev/null
    # A free port now may be taken by the time the server binds it: try a few.
    local port attempt
    for attempt in 1 2 3; do
        port=$((55000 + RANDOM % 5000))
        while (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
        echo "port = $port" | as_pg tee "$TVDB_PGDATA/port.conf" >/dev/null
        if as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -l "$TVDB_CLUSTER_DIR/server.log" -w -t 60 \
                 start >/dev/null; then
            break
        fi
        echo "---- the cluster did not start (attempt $attempt, port $port); its log:"
        cat "$TVDB_CLUSTER_DIR/server.log"
        [ "$attempt" = 3 ] && return 1
    done
    export PGHOST=$TVDB_CLUSTER_DIR PGPORT=$port PGUSER=postgres
    echo "== cluster up on port $port ($TVDB_PGDATA)"
}

tvdb_cluster_stop() {
    [ -n "${TVDB_PGDATA:-}" ] || return 0
    as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$TVDB_CLUSTER_DIR"
    unset TVDB_PGDATA
}
