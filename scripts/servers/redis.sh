# shellcheck shell=bash
# Redis from Debian's redis-server package; sourced by scripts/test-servers.sh.
#
# One server on 127.0.0.1:$DBFLEET_TEST_REDIS_PORT (default 16379), run as the
# package's "redis" user with its own directory under $STATE/redis, a
# test-only password for the default user and an ACL user "app" that may not
# replicate (no SYNC/PSYNC: RDB backups must fail for it). The tests start
# their own throw-away instances (redis-server on a unix socket in tmp_path)
# for "restore into a new instance". Debian's packaged service is not used.

SERVERS+=(redis)

REDIS_PORT="${DBFLEET_TEST_REDIS_PORT:-16379}"
REDIS_STATE="$STATE/redis"
REDIS_CONF="$REDIS_STATE/redis.conf"
REDIS_PID="$REDIS_STATE/redis.pid"
REDIS_LOG="$REDIS_STATE/redis.log"
REDIS_PASSWORD=dbfleet-test-pw
REDIS_APP_USER=app
REDIS_APP_PASSWORD=app-test-pw

redis_install() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools
    fi
    command -v redis-server >/dev/null || die "redis-server installed but not on PATH"
    # Where policy-rc.d allows it, installing the package starts Debian's own
    # service on 6379. It is not ours: stop it (only when it runs from the
    # package's pid file, i.e. it was started by the package).
    if [[ -f /run/redis/redis-server.pid ]] && command -v service >/dev/null; then
        service redis-server stop >/dev/null 2>&1 || true
    fi
}

redis_running() {
    local pid
    [[ -f $REDIS_PID ]] || return 1
    pid=$(head -n 1 "$REDIS_PID")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]]
}

redis_cli() { # redis-cli as the default user; the password travels in the environment
    REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --no-auth-warning "$@"
}

redis_configure() {
    # Rewritten on every start so a changed port takes effect. Readable by the
    # server user only: it holds the (test-only) passwords.
    install -m 0640 -o redis -g redis /dev/null "$REDIS_CONF"
    cat >"$REDIS_CONF" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
loglevel warning
dir $REDIS_STATE/data
dbfilename dump.rdb
databases 16
save ""
appendonly no
# The fork for redis-cli --rdb starts at once instead of after 5 s.
repl-diskless-sync-delay 0
requirepass $REDIS_PASSWORD
user $REDIS_APP_USER on >$REDIS_APP_PASSWORD ~* &* +@all -sync -psync
EOF
}

redis_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/redis.sh" <<EOF
export DBFLEET_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export DBFLEET_TEST_REDIS_PASSWORD=$REDIS_PASSWORD
export DBFLEET_TEST_REDIS_APP_URL=redis://$REDIS_APP_USER@127.0.0.1:$REDIS_PORT/0
export DBFLEET_TEST_REDIS_APP_PASSWORD=$REDIS_APP_PASSWORD
EOF
}

redis_start() {
    redis_install
    ensure_user redis
    install -d -m 0755 "$STATE"
    install -d -o redis -g redis -m 0750 "$REDIS_STATE" "$REDIS_STATE/data"
    if redis_running; then
        log "Redis already running on 127.0.0.1:$REDIS_PORT"
    else
        rm -f "$REDIS_PID" # stale: its process is gone
        redis_configure
        log "starting Redis on 127.0.0.1:$REDIS_PORT"
        as_user redis redis-server "$REDIS_CONF" ||
            die "redis-server did not start (log: $REDIS_LOG)"
    fi
    local i
    for i in $(seq 1 60); do
        [[ $(redis_cli ping 2>/dev/null) == PONG ]] && break
        if [[ $i -eq 60 ]]; then
            tail -n 20 "$REDIS_LOG" >&2 || true
            die "Redis is not answering on 127.0.0.1:$REDIS_PORT"
        fi
        sleep 0.25
    done
    redis_write_env
    log "Redis ready: $(redis_cli info server | tr -d '\r' | grep '^redis_version:')"
}

redis_stop() {
    local pid i
    if redis_running; then
        log "stopping Redis"
        pid=$(head -n 1 "$REDIS_PID")
        kill -TERM "$pid"
        for i in $(seq 1 100); do
            redis_running || break
            sleep 0.1
        done
        if redis_running; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$REDIS_PID"
    else
        log "Redis is not running"
    fi
    rm -f "$STATE/env.d/redis.sh"
}

redis_status() {
    if redis_running; then
        log "Redis running on 127.0.0.1:$REDIS_PORT: $(redis_cli info server | tr -d '\r' |
            grep '^redis_version:')"
    else
        log "Redis not running"
        return 1
    fi
}
