# shellcheck shell=bash
# The MongoDB test server: FerretDB v1 (the MongoDB wire protocol over SQLite)
# and the MongoDB Database Tools (mongodump, mongorestore); sourced by
# scripts/test-servers.sh.
#
# Everything is built from source with Go once and cached outside the
# repository in ~/.cache/dbfleet-test-servers/:
#
#   mongo-tools-<version>/{mongodump,mongorestore}
#       github.com/mongodb/mongo-tools built by the go command at a pinned
#       pseudo-version (in a throw-away module: see mongo_tools_install). The tools' tags have no "v" (r100.10.0), which Go's
#       module proxy cannot resolve, so the pin is the tag's commit as a
#       pseudo-version: v0.0.0-20240724183527-6d4f001be3fc is commit
#       6d4f001be3fc of 2024-07-24, the day MongoDB released 100.10.0 (its
#       changelog says "Released 2024-07-24"; the tree's CHANGELOG.md still
#       ends at 100.9.5, as every release commit's does). The public checksum
#       database does not answer for this module through the proxy, so the
#       module's hash is pinned here (MONGO_TOOLS_SUM) and checked before the
#       build. Both tools' main packages are named `main`, so each is
#       built to its own output name.
#   ferretdb-<version>-<launcher hash>/ferretdb-launcher
#       scripts/servers/ferretdb-launcher, a small program of ours importing
#       FerretDB's embeddable package (FerretDB's own command cannot be built
#       with `go install`: it panics without a generated version file). Its
#       go.mod/go.sum pin every dependency; the cache key includes a hash of
#       the launcher's sources, so an edit rebuilds it.
#
# Backend: SQLite, in $STATE/mongodb/data (no dependency on the PostgreSQL
# test server, which may start later or not at all). FerretDB's embeddable
# package offers no authentication: it accepts any user and password with the
# PLAIN mechanism and checks nothing (there are no users in the SQLite
# backend). The test URL still names a user and the tests hand dbfleet a
# password, so the way the password reaches mongodump (a 0600 --config file,
# never argv) is exercised; a rejected password is not.
#
# The server listens on 127.0.0.1:17017 only. env.d/mongodb.sh exports the
# test URL, the test password and DBFLEET_MONGODB_TOOLS (the directory with
# mongodump/mongorestore, which the engine searches before PATH).

SERVERS+=(mongodb)

MONGO_TOOLS_TAG=r100.10.0
MONGO_TOOLS_VERSION="${DBFLEET_TEST_MONGO_TOOLS_VERSION:-v0.0.0-20240724183527-6d4f001be3fc}"
MONGO_TOOLS_SUM="h1:BOTtfrCNuPnXgnEDvmXYiP0K8WF5JzDh3dQwZ9QThF0="
MONGO_TOOLS_MODULE=github.com/mongodb/mongo-tools
FERRETDB_VERSION=v1.24.2 # keep in step with ferretdb-launcher/go.mod
MONGO_CACHE_ROOT="${DBFLEET_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dbfleet-test-servers}"
MONGO_TOOLS_DIR="$MONGO_CACHE_ROOT/mongo-tools-$MONGO_TOOLS_TAG-$MONGO_TOOLS_VERSION"
MONGO_LAUNCHER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ferretdb-launcher"
MONGO_PORT="${DBFLEET_TEST_MONGODB_PORT:-17017}"
MONGO_STATE="$STATE/mongodb"
MONGO_DATA="$MONGO_STATE/data"
MONGO_PIDFILE="$MONGO_STATE/ferretdb.pid"
MONGO_LOG="$MONGO_STATE/ferretdb.log"
MONGO_TEST_USER=dbfleet
MONGO_TEST_PASSWORD=dbfleet-test-mongo

mongo_launcher_bin() { # the cached launcher for the current sources
    local key
    key=$(cat "$MONGO_LAUNCHER_SRC/main.go" "$MONGO_LAUNCHER_SRC/go.mod" \
        "$MONGO_LAUNCHER_SRC/go.sum" | sha256sum | cut -c1-12)
    echo "$MONGO_CACHE_ROOT/ferretdb-$FERRETDB_VERSION-$key/ferretdb-launcher"
}

mongo_go_env() { # the build environment shared by both builds
    export CGO_ENABLED=0 GOTOOLCHAIN=local
    # Not a source checkout of the module being built: no VCS stamping.
    export GOFLAGS="-buildvcs=false"
}

mongo_tools_install() {
    [[ -x $MONGO_TOOLS_DIR/mongodump && -x $MONGO_TOOLS_DIR/mongorestore ]] && return 0
    command -v go >/dev/null 2>&1 || die "mongo-tools are built with Go: install the go toolchain"
    log "building mongo-tools $MONGO_TOOLS_TAG ($MONGO_TOOLS_VERSION) with go build (once; cached in $MONGO_TOOLS_DIR)"
    local work started sum tool
    install -d -m 0755 "$MONGO_CACHE_ROOT"
    work=$(mktemp -d "$MONGO_CACHE_ROOT/.mongo-tools-build.XXXXXX")
    started=$SECONDS
    if ! (
        mongo_go_env
        cd "$work" || exit 1
        # `go install module/pkg@version` first asks the proxy for the
        # module's version list (to report a deprecation), which the proxy
        # refuses for mongo-tools; a throw-away module that requires the
        # pinned version and builds the two mains needs no list.
        printf 'module dbfleet.invalid/mongo-tools-build\n\ngo 1.21\n\nrequire %s %s\n' \
            "$MONGO_TOOLS_MODULE" "$MONGO_TOOLS_VERSION" >go.mod
        # shellcheck disable=SC2030 # deliberately local to this build subshell
        export GONOSUMDB=$MONGO_TOOLS_MODULE GOFLAGS="$GOFLAGS -mod=mod"
        sum=$(go mod download -json "$MONGO_TOOLS_MODULE@$MONGO_TOOLS_VERSION" |
            sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p')
        if [[ $sum != "$MONGO_TOOLS_SUM" ]]; then
            log "error: $MONGO_TOOLS_MODULE@$MONGO_TOOLS_VERSION has hash '${sum:-none}', expected $MONGO_TOOLS_SUM"
            exit 1
        fi
        for tool in mongodump mongorestore; do
            go build -trimpath -ldflags "-s -w \
                -X main.VersionStr=${MONGO_TOOLS_TAG#r} -X main.GitCommit=${MONGO_TOOLS_VERSION##*-}" \
                -o "$work/$tool.bin" "$MONGO_TOOLS_MODULE/$tool/main" || exit 1
        done
    ); then
        rm -rf "$work"
        die "building mongo-tools $MONGO_TOOLS_VERSION failed"
    fi
    # Moved into place only when both are built: an interrupted build never
    # leaves a directory that a later start would trust.
    install -d -m 0755 "$MONGO_TOOLS_DIR"
    for tool in mongodump mongorestore; do
        mv "$work/$tool.bin" "$MONGO_TOOLS_DIR/$tool"
    done
    rm -rf "$work"
    log "mongo-tools built in $((SECONDS - started)) s: $MONGO_TOOLS_DIR"
}

mongo_launcher_install() {
    local bin work started
    bin=$(mongo_launcher_bin)
    [[ -x $bin ]] && return 0
    command -v go >/dev/null 2>&1 || die "FerretDB is built with Go: install the go toolchain"
    log "building FerretDB $FERRETDB_VERSION (ferretdb-launcher) with go build (once; cached in $(dirname "$bin"))"
    install -d -m 0755 "$MONGO_CACHE_ROOT"
    work=$(mktemp -d "$MONGO_CACHE_ROOT/.ferretdb-build.XXXXXX")
    started=$SECONDS
    if ! (
        mongo_go_env
        cd "$MONGO_LAUNCHER_SRC" || exit 1
        # -mod=readonly: the committed go.sum must cover every module.
        # shellcheck disable=SC2031 # set by mongo_go_env in this subshell
        GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -ldflags "-s -w" \
            -o "$work/ferretdb-launcher" .
    ); then
        rm -rf "$work"
        die "building ferretdb-launcher failed"
    fi
    install -d -m 0755 "$(dirname "$bin")"
    mv "$work/ferretdb-launcher" "$bin"
    rm -rf "$work"
    log "FerretDB built in $((SECONDS - started)) s: $bin"
}

mongo_pid() { # prints the pid of our running FerretDB, or fails
    local pid
    [[ -f $MONGO_PIDFILE ]] || return 1
    pid=$(cat "$MONGO_PIDFILE")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || return 1
    # the pid may have been reused by another program since
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "ferretdb-launcher" || return 1
    echo "$pid"
}

mongo_listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$MONGO_PORT") 2>/dev/null
}

mongo_spawn() {
    local bin=$1
    # The launcher does not daemonize: start it in a new session with none of
    # our descriptors above 2 (else it would hold the caller's output pipes
    # open, and a CI job reading them would never see their end).
    (
        cd "$MONGO_STATE" || exit 1
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ && $fd -gt 2 ]]; then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        setsid "$bin" -listen "127.0.0.1:$MONGO_PORT" -handler sqlite \
            -sqlite-url "file:$MONGO_DATA/" </dev/null >>"$MONGO_LOG" 2>&1 &
        echo $! >"$MONGO_PIDFILE"
    )
}

mongo_write_env() {
    install -d -m 0755 "$STATE/env.d"
    # authSource $external: PLAIN is an external mechanism (written %24 so
    # that no shell or env-file reader expands it).
    cat >"$STATE/env.d/mongodb.sh" <<EOF
export DBFLEET_TEST_MONGODB_URL='mongodb://$MONGO_TEST_USER@127.0.0.1:$MONGO_PORT/?authMechanism=PLAIN&authSource=%24external'
export DBFLEET_TEST_MONGODB_PASSWORD=$MONGO_TEST_PASSWORD
export DBFLEET_MONGODB_TOOLS=$MONGO_TOOLS_DIR
EOF
}

mongodb_start() {
    local bin i
    mongo_tools_install
    mongo_launcher_install
    bin=$(mongo_launcher_bin)
    install -d -m 0755 "$STATE" "$MONGO_STATE"
    install -d -m 0700 "$MONGO_DATA"
    if mongo_pid >/dev/null; then
        log "FerretDB already running (pid $(mongo_pid))"
    else
        rm -f "$MONGO_PIDFILE"
        log "starting FerretDB $FERRETDB_VERSION (SQLite) on 127.0.0.1:$MONGO_PORT"
        mongo_spawn "$bin"
    fi
    for i in $(seq 1 120); do
        mongo_listening && break
        if ! mongo_pid >/dev/null || [[ $i -eq 120 ]]; then
            tail -n 20 "$MONGO_LOG" >&2 || true
            die "FerretDB is not answering on 127.0.0.1:$MONGO_PORT (log: $MONGO_LOG)"
        fi
        sleep 0.25
    done
    mongo_write_env
    log "FerretDB ready: $FERRETDB_VERSION on mongodb://127.0.0.1:$MONGO_PORT; tools in $MONGO_TOOLS_DIR"
}

mongodb_stop() {
    local pid i
    if pid=$(mongo_pid); then
        log "stopping FerretDB (pid $pid)"
        kill -TERM "$pid"
        for i in $(seq 1 80); do
            [[ -r /proc/$pid/stat ]] || break
            [[ $i -eq 80 ]] && kill -KILL "$pid" 2>/dev/null
            sleep 0.25
        done
    else
        log "FerretDB is not running"
    fi
    rm -f "$MONGO_PIDFILE" "$STATE/env.d/mongodb.sh"
}

mongodb_status() {
    if mongo_pid >/dev/null && mongo_listening; then
        log "FerretDB running on 127.0.0.1:$MONGO_PORT (pid $(mongo_pid), $FERRETDB_VERSION)"
    else
        log "FerretDB not running"
        return 1
    fi
}
