# shellcheck shell=bash
# Neo4j Community 5.26 for the neo4j engine's tests; sourced by
# scripts/test-servers.sh.
#
# Neo4j is embedded by a small Java launcher (tests/servers/neo4j-launcher),
# built once with Maven from Maven Central and cached outside the repository
# (~/.cache/dbfleet-test-servers/neo4j-<version>/: the launcher jar, its
# classpath in lib/ and a neo4j-admin wrapper running Neo4j's AdminTool).
# Maven's local repository (~/.m2) is the download cache. 5.26 is the last
# Neo4j line that runs on Java 17. Neo4j Community is GPLv3: only built and
# run here as a throw-away test server, never shipped with dbfleet.
#
# One JVM hosts two DBMS instances, each with Bolt on 127.0.0.1 and
# authentication on: "main" (port 17687, the tests' sources) and "scratch"
# (17688, where restores go: Community has one user database per DBMS, so
# restoring next to a source needs a second server). The password of user
# neo4j is a test-only value the launcher reads from a 0600 file (never argv).

SERVERS+=(neo4j)

NEO4J_VERSION="${DBFLEET_TEST_NEO4J_VERSION:-5.26.30}"
NEO4J_CACHE="${DBFLEET_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dbfleet-test-servers}/neo4j-$NEO4J_VERSION"
NEO4J_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tests/servers/neo4j-launcher"
NEO4J_PORT="${DBFLEET_TEST_NEO4J_PORT:-17687}"
NEO4J_SCRATCH_PORT="${DBFLEET_TEST_NEO4J_SCRATCH_PORT:-17688}"
NEO4J_STATE="$STATE/neo4j"
NEO4J_PIDFILE="$NEO4J_STATE/launcher.pid"
NEO4J_LOG="$NEO4J_STATE/launcher.log"
NEO4J_PASSWORD_FILE="$NEO4J_STATE/password"
NEO4J_TEST_PASSWORD=dbfleet-test-neo4j

neo4j_source_hash() { # the launcher's sources: a changed launcher means a rebuild
    (cd "$NEO4J_SRC" && find pom.xml src neo4j-admin -type f | LC_ALL=C sort | xargs cat) |
        sha256sum | cut -d' ' -f1
}

neo4j_install() {
    local hash
    hash=$(neo4j_source_hash)
    if [[ -f $NEO4J_CACHE/neo4j-launcher.jar && -x $NEO4J_CACHE/neo4j-admin &&
        $(cat "$NEO4J_CACHE/source.sha256" 2>/dev/null) == "$hash" ]]; then
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
        apt_install openjdk-17-jdk-headless maven
    fi
    log "building the Neo4j $NEO4J_VERSION launcher with Maven (once; cached in $NEO4J_CACHE)"
    local build started
    install -d -m 0755 "$(dirname "$NEO4J_CACHE")"
    # Build in a scratch copy (no target/ in the source tree), then move the
    # result into place: an interrupted build never leaves a half cache.
    build=$(mktemp -d "$(dirname "$NEO4J_CACHE")/.neo4j-build.XXXXXX")
    started=$SECONDS
    cp -r "$NEO4J_SRC/pom.xml" "$NEO4J_SRC/src" "$build/"
    if ! (cd "$build" && mvn -q -B package -DskipTests -Dneo4j.version="$NEO4J_VERSION" \
        </dev/null); then
        rm -rf "$build"
        die "building the Neo4j launcher failed (mvn package in a copy of $NEO4J_SRC)"
    fi
    mkdir "$build/out"
    mv "$build/target/neo4j-launcher-1.jar" "$build/out/neo4j-launcher.jar"
    mv "$build/target/lib" "$build/out/lib"
    install -m 0755 "$NEO4J_SRC/neo4j-admin" "$build/out/neo4j-admin"
    echo "$hash" >"$build/out/source.sha256"
    rm -rf "$NEO4J_CACHE"
    mv "$build/out" "$NEO4J_CACHE"
    rm -rf "$build"
    log "Neo4j launcher built in $((SECONDS - started)) s: $NEO4J_CACHE"
}

neo4j_pid() { # prints the pid of our running launcher, or fails
    local pid
    [[ -f $NEO4J_PIDFILE ]] || return 1
    pid=$(cat "$NEO4J_PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # the pid may have been reused by another program since
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "dbfleet.testserver.Launcher" || return 1
    echo "$pid"
}

neo4j_bolt_open() { # neo4j_bolt_open PORT: something accepts connections there
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

neo4j_spawn() {
    # The launcher does not daemonize: start it in a new session with none of
    # our descriptors (else it would hold the caller's output pipes open, and
    # a CI job reading them would never see their end).
    (
        cd "$NEO4J_STATE" || exit 1
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ && $fd -gt 2 ]]; then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        NEO4J_LAUNCHER_PASSWORD_FILE="$NEO4J_PASSWORD_FILE" exec setsid java -Xmx1g \
            -XX:+UseSerialGC -cp "$NEO4J_CACHE/neo4j-launcher.jar:$NEO4J_CACHE/lib/*" \
            dbfleet.testserver.Launcher "$NEO4J_STATE/main" "$NEO4J_PORT" \
            "$NEO4J_STATE/scratch" "$NEO4J_SCRATCH_PORT" </dev/null >>"$NEO4J_LOG" 2>&1
    ) &
    echo $! >"$NEO4J_PIDFILE"
}

neo4j_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/neo4j.sh" <<EOF2
export DBFLEET_TEST_NEO4J_URL=bolt://neo4j@127.0.0.1:$NEO4J_PORT
export DBFLEET_TEST_NEO4J_SCRATCH_URL=bolt://neo4j@127.0.0.1:$NEO4J_SCRATCH_PORT
export DBFLEET_TEST_NEO4J_PASSWORD=$NEO4J_TEST_PASSWORD
export DBFLEET_TEST_NEO4J_HOME=$NEO4J_CACHE
export DBFLEET_TEST_NEO4J_ADMIN=$NEO4J_CACHE/neo4j-admin
EOF2
}

neo4j_start() {
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless maven
    neo4j_install
    install -d -m 0700 "$NEO4J_STATE"
    (umask 077 && printf '%s\n' "$NEO4J_TEST_PASSWORD" >"$NEO4J_PASSWORD_FILE")
    if neo4j_pid >/dev/null; then
        log "Neo4j already running (pid $(neo4j_pid))"
    else
        rm -f "$NEO4J_PIDFILE"
        log "starting Neo4j $NEO4J_VERSION on 127.0.0.1:$NEO4J_PORT and :$NEO4J_SCRATCH_PORT (Bolt)"
        neo4j_spawn
    fi
    local i
    for i in $(seq 1 240); do
        if neo4j_bolt_open "$NEO4J_PORT" && neo4j_bolt_open "$NEO4J_SCRATCH_PORT" &&
            grep -q "launcher: all ready" "$NEO4J_LOG" 2>/dev/null; then
            break
        fi
        if ! neo4j_pid >/dev/null || [[ $i -eq 240 ]]; then
            tail -n 20 "$NEO4J_LOG" >&2 || true
            die "Neo4j is not answering on 127.0.0.1:$NEO4J_PORT (log: $NEO4J_LOG)"
        fi
        sleep 0.5
    done
    neo4j_write_env
    log "Neo4j ready: $NEO4J_VERSION on bolt://127.0.0.1:$NEO4J_PORT (scratch :$NEO4J_SCRATCH_PORT)"
}

neo4j_stop() {
    local pid i
    if pid=$(neo4j_pid); then
        log "stopping Neo4j (pid $pid)"
        kill -TERM "$pid" # the launcher's shutdown hook stops both DBMS cleanly
        for i in $(seq 1 120); do
            kill -0 "$pid" 2>/dev/null || break
            [[ $i -eq 120 ]] && kill -KILL "$pid" 2>/dev/null
            sleep 0.25
        done
    else
        log "Neo4j is not running"
    fi
    rm -f "$NEO4J_PIDFILE" "$STATE/env.d/neo4j.sh"
}

neo4j_status() {
    if neo4j_pid >/dev/null && neo4j_bolt_open "$NEO4J_PORT"; then
        log "Neo4j running on 127.0.0.1:$NEO4J_PORT and :$NEO4J_SCRATCH_PORT (pid $(neo4j_pid))"
    else
        log "Neo4j not running"
        return 1
    fi
}
