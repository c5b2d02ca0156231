# shellcheck shell=bash
# Weaviate, a vector database, for the weaviate engine's tests; sourced by
# scripts/test-servers.sh.
#
# Built from source with `go install` once and cached outside the repository
# (~/.cache/dbfleet-test-servers/weaviate-<version>/weaviate-server); later
# starts reuse the binary. Weaviate is BSD-3-Clause; it is only built and run
# here as a throw-away test server.
#
# One node on 127.0.0.1: REST on 18080, gRPC on 15051, anonymous access, no
# vectorizer modules (the tests bring their own vectors), no backup module
# (dbfleet does not use them: docs/weaviate.md), telemetry off. The cluster
# ports (memberlist gossip/data, raft) are set explicitly below 32768 so that
# they never collide with ephemeral client ports, and bound to 127.0.0.1.

SERVERS+=(weaviate)

WEAVIATE_VERSION="${DBFLEET_TEST_WEAVIATE_VERSION:-v1.35.2}"
WEAVIATE_MODULE=github.com/weaviate/weaviate/cmd/weaviate-server
WEAVIATE_CACHE="${DBFLEET_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dbfleet-test-servers}/weaviate-$WEAVIATE_VERSION"
WEAVIATE_BIN="$WEAVIATE_CACHE/weaviate-server"
WEAVIATE_PORT="${DBFLEET_TEST_WEAVIATE_PORT:-18080}"
WEAVIATE_GRPC_PORT="${DBFLEET_TEST_WEAVIATE_GRPC_PORT:-15051}"
WEAVIATE_GOSSIP_PORT="${DBFLEET_TEST_WEAVIATE_GOSSIP_PORT:-17946}"
WEAVIATE_DATA_PORT="${DBFLEET_TEST_WEAVIATE_DATA_PORT:-17947}"
WEAVIATE_RAFT_PORT="${DBFLEET_TEST_WEAVIATE_RAFT_PORT:-18300}"
WEAVIATE_RAFT_RPC_PORT="${DBFLEET_TEST_WEAVIATE_RAFT_RPC_PORT:-18301}"
WEAVIATE_STATE="$STATE/weaviate"
WEAVIATE_DATA="$WEAVIATE_STATE/data"
WEAVIATE_PIDFILE="$WEAVIATE_STATE/weaviate.pid"
WEAVIATE_LOG="$WEAVIATE_STATE/weaviate.log"

weaviate_install() {
    # Weaviate's Go assembly (SIMD distances) needs no cgo.
    go_install_cached Weaviate "$WEAVIATE_MODULE" "$WEAVIATE_VERSION" weaviate-server "$WEAVIATE_BIN"
}

weaviate_pid() { # prints the pid of our running Weaviate, or fails
    local pid
    [[ -f $WEAVIATE_PIDFILE ]] || return 1
    pid=$(cat "$WEAVIATE_PIDFILE")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || return 1
    # the pid may have been reused by another program since
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "weaviate-server" || return 1
    echo "$pid"
}

weaviate_ready() {
    curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$WEAVIATE_PORT/v1/.well-known/ready"
}

weaviate_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/weaviate.sh" <<EOF
export DBFLEET_TEST_WEAVIATE_URL=http://127.0.0.1:$WEAVIATE_PORT
export DBFLEET_TEST_WEAVIATE_GRPC_PORT=$WEAVIATE_GRPC_PORT
EOF
}

weaviate_spawn() {
    # weaviate-server does not daemonize: start it in a new session with none
    # of our descriptors (else it would hold the caller's output pipes open,
    # and a CI job reading them would never see their end). $BASHPID is the
    # subshell, whose fds above 2 are closed before the exec.
    (
        cd "$WEAVIATE_STATE" || exit 1
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ && $fd -gt 2 ]]; then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        export AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true \
            AUTHENTICATION_APIKEY_ENABLED=false \
            PERSISTENCE_DATA_PATH="$WEAVIATE_DATA" \
            DEFAULT_VECTORIZER_MODULE=none \
            ENABLE_MODULES="" \
            API_BASED_MODULES_DISABLED=true \
            DISABLE_TELEMETRY=true \
            GO_PROFILING_DISABLE=true \
            QUERY_DEFAULTS_LIMIT=25 \
            LOG_LEVEL=warning \
            CLUSTER_HOSTNAME=node1 \
            CLUSTER_ADVERTISE_ADDR=127.0.0.1 \
            CLUSTER_BIND_ADDR=127.0.0.1 \
            CLUSTER_GOSSIP_BIND_PORT="$WEAVIATE_GOSSIP_PORT" \
            CLUSTER_DATA_BIND_PORT="$WEAVIATE_DATA_PORT" \
            RAFT_PORT="$WEAVIATE_RAFT_PORT" \
            RAFT_INTERNAL_RPC_PORT="$WEAVIATE_RAFT_RPC_PORT" \
            RAFT_BOOTSTRAP_EXPECT=1 \
            RAFT_JOIN="node1:$WEAVIATE_RAFT_RPC_PORT" \
            GRPC_PORT="$WEAVIATE_GRPC_PORT" \
            GO_MEMLIMIT="${DBFLEET_TEST_WEAVIATE_MEMLIMIT:-2GiB}"
        exec setsid "$WEAVIATE_BIN" --host 127.0.0.1 --port "$WEAVIATE_PORT" --scheme http \
            </dev/null >>"$WEAVIATE_LOG" 2>&1
    ) &
    echo $! >"$WEAVIATE_PIDFILE"
}

weaviate_start() {
    weaviate_install
    command -v curl >/dev/null || apt_install curl
    install -d -m 0755 "$STATE" "$WEAVIATE_STATE"
    install -d -m 0700 "$WEAVIATE_DATA"
    if weaviate_pid >/dev/null; then
        log "Weaviate already running (pid $(weaviate_pid))"
    else
        rm -f "$WEAVIATE_PIDFILE"
        log "starting Weaviate on 127.0.0.1:$WEAVIATE_PORT (gRPC :$WEAVIATE_GRPC_PORT)"
        weaviate_spawn
    fi
    local i
    for i in $(seq 1 240); do
        weaviate_ready && break
        if [[ $i -eq 240 ]] || { [[ $i -gt 4 ]] && ! weaviate_pid >/dev/null; }; then
            tail -n 20 "$WEAVIATE_LOG" >&2 || true
            die "Weaviate is not ready on 127.0.0.1:$WEAVIATE_PORT (log: $WEAVIATE_LOG)"
        fi
        sleep 0.25
    done
    weaviate_write_env
    log "Weaviate ready: $(curl -s --max-time 2 "http://127.0.0.1:$WEAVIATE_PORT/v1/meta" |
        sed -n 's/.*"version":"\([^"]*\)".*/\1/p') on http://127.0.0.1:$WEAVIATE_PORT"
}

weaviate_stop() {
    local pid i
    if pid=$(weaviate_pid); then
        log "stopping Weaviate (pid $pid)"
        kill -TERM "$pid"
        for i in $(seq 1 80); do
            [[ -r /proc/$pid/stat && $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || break
            [[ $i -eq 80 ]] && kill -KILL "$pid" 2>/dev/null
            sleep 0.25
        done
    else
        log "Weaviate is not running"
    fi
    rm -f "$WEAVIATE_PIDFILE" "$STATE/env.d/weaviate.sh"
}

weaviate_status() {
    if weaviate_pid >/dev/null && weaviate_ready; then
        log "Weaviate running on 127.0.0.1:$WEAVIATE_PORT (pid $(weaviate_pid), $WEAVIATE_VERSION)"
    else
        log "Weaviate not running"
        return 1
    fi
}
