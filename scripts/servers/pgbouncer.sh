# shellcheck shell=bash
# PgBouncer from Debian's pgbouncer package, in front of the PostgreSQL test
# server (scripts/servers/pg.sh); sourced by scripts/test-servers.sh.
#
# Listens on 127.0.0.1:$DBFLEET_TEST_PGBOUNCER_PORT (default 16432), runs as
# the "postgres" user (pgbouncer refuses root) with its own config, auth
# file, pid file and log under $STATE/pgbouncer. Every database of the
# PostgreSQL server is reachable through it (session pooling, pool size 5);
# the superuser "dbfleet" is an admin of its console (SHOW POOLS/STATS).
# Debian's packaged service is not used.

SERVERS+=(pgbouncer)

PGBOUNCER_PORT="${DBFLEET_TEST_PGBOUNCER_PORT:-16432}"
PGBOUNCER_STATE="$STATE/pgbouncer"
PGBOUNCER_CONF="$PGBOUNCER_STATE/pgbouncer.ini"
PGBOUNCER_PID="$PGBOUNCER_STATE/pgbouncer.pid"
PGBOUNCER_LOG="$PGBOUNCER_STATE/pgbouncer.log"
PGBOUNCER_POOL_SIZE=5

pgbouncer_install() {
    command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || apt_install pgbouncer
    # Installing the package may start Debian's own service on 6432: not ours.
    if [[ -f /run/postgresql/pgbouncer.pid ]] && command -v service >/dev/null; then
        service pgbouncer stop >/dev/null 2>&1 || true
    fi
}

pgbouncer_bin() { command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer; }

pgbouncer_running() {
    local pid
    [[ -f $PGBOUNCER_PID ]] || return 1
    pid=$(head -n 1 "$PGBOUNCER_PID")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == pgbouncer* ]]
}

pgbouncer_configure() {
    # Rewritten on every start; readable by the server user only (the auth
    # file holds the test-only passwords of the PostgreSQL server's roles).
    install -m 0600 -o postgres -g postgres /dev/null "$PGBOUNCER_STATE/userlist.txt"
    cat >"$PGBOUNCER_STATE/userlist.txt" <<EOF
"$PG_SUPERUSER" "$PG_SUPERUSER_PASSWORD"
"$PG_APP_USER" "$PG_APP_PASSWORD"
EOF
    install -m 0600 -o postgres -g postgres /dev/null "$PGBOUNCER_CONF"
    cat >"$PGBOUNCER_CONF" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $PGBOUNCER_STATE
auth_type = scram-sha-256
auth_file = $PGBOUNCER_STATE/userlist.txt
admin_users = $PG_SUPERUSER
pool_mode = session
default_pool_size = $PGBOUNCER_POOL_SIZE
max_client_conn = 100
pidfile = $PGBOUNCER_PID
logfile = $PGBOUNCER_LOG
EOF
}

pgbouncer_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/pgbouncer.sh" <<EOF
export DBFLEET_TEST_PGBOUNCER_URL=postgresql://$PG_SUPERUSER@127.0.0.1:$PGBOUNCER_PORT/pgbouncer
export DBFLEET_TEST_PGBOUNCER_PASSWORD=$PG_SUPERUSER_PASSWORD
export DBFLEET_TEST_PGBOUNCER_POOL_SIZE=$PGBOUNCER_POOL_SIZE
EOF
}

pgbouncer_start() {
    pgbouncer_install
    install -d -o postgres -g postgres -m 0750 "$PGBOUNCER_STATE"
    if pgbouncer_running; then
        log "PgBouncer already running on 127.0.0.1:$PGBOUNCER_PORT"
    else
        rm -f "$PGBOUNCER_PID"
        pgbouncer_configure
        log "starting PgBouncer on 127.0.0.1:$PGBOUNCER_PORT (PostgreSQL on $PG_PORT)"
        as_user postgres "$(pgbouncer_bin)" -d "$PGBOUNCER_CONF" ||
            die "pgbouncer did not start (log: $PGBOUNCER_LOG)"
    fi
    local i
    for i in $(seq 1 60); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PGBOUNCER_PORT") 2>/dev/null && break
        if [[ $i -eq 60 ]]; then
            tail -n 20 "$PGBOUNCER_LOG" >&2 || true
            die "PgBouncer is not listening on 127.0.0.1:$PGBOUNCER_PORT"
        fi
        sleep 0.25
    done
    pgbouncer_write_env
    log "PgBouncer ready: $("$(pgbouncer_bin)" --version | head -n 1)"
}

pgbouncer_stop() {
    local pid i
    if pgbouncer_running; then
        log "stopping PgBouncer"
        pid=$(head -n 1 "$PGBOUNCER_PID")
        kill -TERM "$pid"
        for i in $(seq 1 100); do
            pgbouncer_running || break
            sleep 0.1
        done
        if pgbouncer_running; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$PGBOUNCER_PID"
    else
        log "PgBouncer is not running"
    fi
    rm -f "$STATE/env.d/pgbouncer.sh"
}

pgbouncer_status() {
    if pgbouncer_running; then
        log "PgBouncer running on 127.0.0.1:$PGBOUNCER_PORT"
    else
        log "PgBouncer not running"
        return 1
    fi
}
