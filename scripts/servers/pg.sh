# shellcheck shell=bash
# PostgreSQL from Debian's packages; sourced by scripts/test-servers.sh.

SERVERS+=(pg)

# --- PostgreSQL --------------------------------------------------------------

PG_PORT="${DBFLEET_TEST_PG_PORT:-15432}"
PG_STATE="$STATE/pg"
PG_DATA="$PG_STATE/data"
PG_RUN="$PG_STATE/run"
PG_LOG="$PG_STATE/postgresql.log"
PG_SUPERUSER=dbfleet
PG_SUPERUSER_PASSWORD=dbfleet-test-pw
PG_APP_USER=app
PG_APP_PASSWORD=app-test-pw

pg_bindir() { # newest installed major version
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n $dir && -x $dir/postgres ]] || return 1
    echo "$dir"
}

pg_install() {
    pg_bindir >/dev/null && return 0
    apt_install postgresql postgresql-contrib
    pg_bindir >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/postgres"
}

pg_ctl_() {
    local bin
    bin=$(pg_bindir)
    as_user postgres "$bin/pg_ctl" -D "$PG_DATA" "$@"
}

pg_running() {
    # The postmaster of our data directory is alive (a zombie left by a killed
    # session does not count; pg_ctl status would take it for a server).
    local pid state
    [[ -f $PG_DATA/postmaster.pid ]] || return 1
    pid=$(head -n 1 "$PG_DATA/postmaster.pid")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat")
    [[ $state != Z && $(cat "/proc/$pid/comm" 2>/dev/null) == postgres* ]]
}

pg_clear_stale_locks() { # only when pg_running said no: the lock files are left over
    rm -f "$PG_DATA/postmaster.pid" "$PG_RUN/.s.PGSQL.$PG_PORT" "$PG_RUN/.s.PGSQL.$PG_PORT.lock"
}

pg_initdb() {
    local bin major
    bin=$(pg_bindir)
    major=$(basename "$(dirname "$bin")")
    if [[ -f $PG_DATA/PG_VERSION && $(cat "$PG_DATA/PG_VERSION") != "$major" ]]; then
        log "data directory is from PostgreSQL $(cat "$PG_DATA/PG_VERSION"), re-creating for $major"
        rm -rf "$PG_DATA"
    fi
    [[ -f $PG_DATA/PG_VERSION ]] && return 0
    log "initdb (PostgreSQL $major) in $PG_DATA"
    rm -rf "$PG_DATA"
    install -d -o postgres -g postgres -m 0700 "$PG_DATA"
    as_user postgres "$bin/initdb" -D "$PG_DATA" --username=postgres --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 >/dev/null
}

pg_configure() {
    # Settings are rewritten on every start so a changed port takes effect.
    cat >"$PG_DATA/dbfleet-test.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
wal_level = replica
max_wal_senders = 4
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 128MB
log_min_messages = warning
EOF
    grep -q "^include_if_exists = 'dbfleet-test.conf'" "$PG_DATA/postgresql.conf" ||
        echo "include_if_exists = 'dbfleet-test.conf'" >>"$PG_DATA/postgresql.conf"
    cat >"$PG_DATA/pg_hba.conf" <<EOF
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 peer
host    all          all   127.0.0.1/32  scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
EOF
    chown postgres:postgres "$PG_DATA/dbfleet-test.conf" "$PG_DATA/pg_hba.conf"
}

pg_psql() { # SQL on stdin, as the bootstrap superuser over the private socket
    local bin
    bin=$(pg_bindir)
    as_user postgres "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

pg_provision() {
    pg_psql <<EOF
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN SUPERUSER', '$PG_SUPERUSER')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_SUPERUSER') \gexec
ALTER ROLE $PG_SUPERUSER LOGIN SUPERUSER PASSWORD '$PG_SUPERUSER_PASSWORD';
SELECT format('CREATE ROLE %I LOGIN', '$PG_APP_USER')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_APP_USER') \gexec
ALTER ROLE $PG_APP_USER LOGIN NOSUPERUSER PASSWORD '$PG_APP_PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_APP_USER', '$PG_APP_USER')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_APP_USER') \gexec
EOF
}

pg_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/pg.sh" <<EOF
export DBFLEET_TEST_PG_URL=postgresql://$PG_SUPERUSER@127.0.0.1:$PG_PORT/postgres
export DBFLEET_TEST_PG_PASSWORD=$PG_SUPERUSER_PASSWORD
export DBFLEET_TEST_PG_APP_URL=postgresql://$PG_APP_USER@127.0.0.1:$PG_PORT/$PG_APP_USER
export DBFLEET_TEST_PG_APP_PASSWORD=$PG_APP_PASSWORD
EOF
}

pg_start() {
    pg_install
    ensure_user postgres
    install -d -m 0755 "$STATE"
    install -d -o postgres -g postgres -m 0755 "$PG_STATE"
    install -d -o postgres -g postgres -m 0700 "$PG_RUN"
    if pg_running; then
        log "PostgreSQL already running in $PG_DATA"
    else
        pg_initdb
        pg_clear_stale_locks
        pg_configure
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        if ! pg_ctl_ -l "$PG_LOG" -w -t 60 start >/dev/null; then
            tail -n 20 "$PG_LOG" >&2 || true
            die "PostgreSQL did not start (log: $PG_LOG)"
        fi
    fi
    local bin i
    bin=$(pg_bindir)
    for i in $(seq 1 60); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        [[ $i -eq 60 ]] && die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"
        sleep 0.5
    done
    pg_provision
    pg_write_env
    log "PostgreSQL ready: $(pg_psql -At -c 'SELECT version()')"
}

pg_stop() {
    if pg_running; then
        log "stopping PostgreSQL"
        pg_ctl_ -m fast -w stop >/dev/null
    else
        log "PostgreSQL is not running"
    fi
    rm -f "$STATE/env.d/pg.sh"
}

pg_status() {
    if pg_running; then
        log "PostgreSQL running on 127.0.0.1:$PG_PORT: $(pg_psql -At -c 'SHOW server_version')"
    else
        log "PostgreSQL not running"
        return 1
    fi
}

# --- main --------------------------------------------------------------------
