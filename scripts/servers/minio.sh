# shellcheck shell=bash
# MinIO, a real S3 server, for the S3 storage backend's tests; sourced by
# scripts/test-servers.sh.
#
# Built from source with `go install` once and cached outside the repository
# (~/.cache/dbfleet-test-servers/minio-<version>/minio); later starts reuse the
# binary. MinIO publishes no semver tags, so the module version is a pinned
# pseudo-version (the last commit of github.com/minio/minio, which is no longer
# maintained upstream). MinIO is AGPL-3.0: it is only built and run here as a
# throw-away test server, never shipped with dbfleet.
#
# The server listens on 127.0.0.1 only, with test-only credentials. The tests
# create their bucket themselves (tests/integration/fixtures_s3.py).

SERVERS+=(minio)

MINIO_VERSION="${DBFLEET_TEST_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
MINIO_MODULE=github.com/minio/minio
MINIO_CACHE="${DBFLEET_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dbfleet-test-servers}/minio-$MINIO_VERSION"
MINIO_BIN="$MINIO_CACHE/minio"
MINIO_PORT="${DBFLEET_TEST_MINIO_PORT:-19000}"
MINIO_CONSOLE_PORT="${DBFLEET_TEST_MINIO_CONSOLE_PORT:-19001}"
MINIO_STATE="$STATE/minio"
MINIO_DATA="$MINIO_STATE/data"
MINIO_PIDFILE="$MINIO_STATE/minio.pid"
MINIO_LOG="$MINIO_STATE/minio.log"
MINIO_TEST_USER=dbfleet-minio
MINIO_TEST_PASSWORD=dbfleet-test-secret
MINIO_TEST_BUCKET=dbfleet-test

minio_install() {
    go_install_cached MinIO "$MINIO_MODULE" "$MINIO_VERSION" minio "$MINIO_BIN"
}

minio_pid() { # prints the pid of our running MinIO, or fails
    local pid
    [[ -f $MINIO_PIDFILE ]] || return 1
    pid=$(cat "$MINIO_PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # the pid may have been reused by another program since
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "minio server" || return 1
    echo "$pid"
}

minio_live() {
    curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$MINIO_PORT/minio/health/live"
}

minio_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/minio.sh" <<EOF
export DBFLEET_TEST_S3_ENDPOINT=http://127.0.0.1:$MINIO_PORT
export DBFLEET_TEST_S3_ACCESS_KEY=$MINIO_TEST_USER
export DBFLEET_TEST_S3_SECRET_KEY=$MINIO_TEST_PASSWORD
export DBFLEET_TEST_S3_BUCKET=$MINIO_TEST_BUCKET
EOF
}

minio_start() {
    minio_install
    install -d -m 0755 "$STATE" "$MINIO_STATE"
    install -d -m 0700 "$MINIO_DATA"
    if minio_pid >/dev/null; then
        log "MinIO already running (pid $(minio_pid))"
    else
        rm -f "$MINIO_PIDFILE"
        log "starting MinIO on 127.0.0.1:$MINIO_PORT"
        # setsid: the server outlives this script, in its own process group
        MINIO_ROOT_USER=$MINIO_TEST_USER MINIO_ROOT_PASSWORD=$MINIO_TEST_PASSWORD \
            MINIO_BROWSER=off MINIO_UPDATE=off \
            setsid "$MINIO_BIN" server "$MINIO_DATA" --quiet \
            --address "127.0.0.1:$MINIO_PORT" \
            --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
            </dev/null >>"$MINIO_LOG" 2>&1 &
        echo $! >"$MINIO_PIDFILE"
    fi
    local i
    for i in $(seq 1 120); do
        minio_live && break
        if ! minio_pid >/dev/null; then
            tail -n 20 "$MINIO_LOG" >&2 || true
            die "MinIO exited (log: $MINIO_LOG)"
        fi
        [[ $i -eq 120 ]] && die "MinIO is not answering on 127.0.0.1:$MINIO_PORT (log: $MINIO_LOG)"
        sleep 0.25
    done
    minio_write_env
    log "MinIO ready: $MINIO_VERSION on http://127.0.0.1:$MINIO_PORT"
}

minio_stop() {
    local pid i
    if pid=$(minio_pid); then
        log "stopping MinIO (pid $pid)"
        kill -TERM "$pid"
        for i in $(seq 1 80); do
            kill -0 "$pid" 2>/dev/null || break
            [[ $i -eq 80 ]] && kill -KILL "$pid" 2>/dev/null
            sleep 0.25
        done
    else
        log "MinIO is not running"
    fi
    rm -f "$MINIO_PIDFILE" "$STATE/env.d/minio.sh"
}

minio_status() {
    if minio_pid >/dev/null && minio_live; then
        log "MinIO running on 127.0.0.1:$MINIO_PORT (pid $(minio_pid), $MINIO_VERSION)"
    else
        log "MinIO not running"
        return 1
    fi
}
