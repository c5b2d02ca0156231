# shellcheck shell=bash
# MariaDB from Debian's packages (mariadb-server, mariadb-client); sourced by
# scripts/test-servers.sh. The server runs as the package's "mysql" user with
# its own data directory, socket and port; the packaged service is not used.

SERVERS+=(mariadb)

# --- MariaDB -----------------------------------------------------------------

MARIADB_PORT="${DBFLEET_TEST_MARIADB_PORT:-13306}"
MARIADB_STATE="$STATE/mariadb"
MARIADB_DATA="$MARIADB_STATE/data"
MARIADB_BINLOG="$MARIADB_STATE/binlog"
MARIADB_RUN="$MARIADB_STATE/run"
MARIADB_SOCKET="$MARIADB_RUN/mariadb.sock"
MARIADB_PIDFILE="$MARIADB_RUN/mariadbd.pid"
MARIADB_CNF="$MARIADB_STATE/my.cnf"
MARIADB_LOG="$MARIADB_STATE/mariadb.log"
MARIADB_ADMIN_USER=dbfleet
MARIADB_ADMIN_PASSWORD=dbfleet-test-pw
MARIADB_APP_USER=app
MARIADB_APP_PASSWORD=app-test-pw

mariadb_install() {
    if [[ -x /usr/sbin/mariadbd ]] && command -v mariadb-dump >/dev/null &&
        command -v mariadb >/dev/null; then
        return 0
    fi
    # Debian's postinst would start the packaged service (port 3306, datadir
    # /var/lib/mysql) through invoke-rc.d; a temporary policy-rc.d denies that
    # where the machine has none of its own.
    local policy=/usr/sbin/policy-rc.d added=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added=1
    fi
    apt_install mariadb-server mariadb-client || {
        [[ -z $added ]] || rm -f "$policy"
        die "apt-get install mariadb-server mariadb-client failed"
    }
    [[ -z $added ]] || rm -f "$policy"
    [[ -x /usr/sbin/mariadbd ]] || die "mariadb-server installed but no /usr/sbin/mariadbd"
}

mariadb_pid() { # the pid of our mariadbd, if it is alive
    local pid
    [[ -f $MARIADB_PIDFILE ]] || return 1
    pid=$(head -n 1 "$MARIADB_PIDFILE")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == mariadbd ]] || return 1
    echo "$pid"
}

mariadb_running() { mariadb_pid >/dev/null; }

mariadb_configure() {
    # Rewritten on every start so a changed port takes effect. Durability is
    # traded for speed: these are throw-away test servers.
    cat >"$MARIADB_CNF" <<EOF
[mariadbd]
user = mysql
datadir = $MARIADB_DATA
socket = $MARIADB_SOCKET
pid-file = $MARIADB_PIDFILE
bind-address = 127.0.0.1
port = $MARIADB_PORT
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
log-error = $MARIADB_LOG
# the binary log: point-in-time recovery starts from a dump's binlog position
server-id = 1
log-bin = $MARIADB_BINLOG/mariadb-bin
binlog-format = ROW
expire-logs-days = 2
event-scheduler = OFF
performance-schema = OFF
innodb-buffer-pool-size = 256M
innodb-log-file-size = 64M
innodb-flush-log-at-trx-commit = 2
innodb-doublewrite = 0
sync-binlog = 0
max-allowed-packet = 256M
max-connections = 200
EOF
    chmod 0644 "$MARIADB_CNF"
}

mariadb_initdb() {
    [[ -d $MARIADB_DATA/mysql ]] && return 0
    log "mariadb-install-db in $MARIADB_DATA"
    rm -rf "$MARIADB_DATA"
    install -d -o mysql -g mysql -m 0750 "$MARIADB_DATA"
    # root@localhost authenticates through the socket (the OS user root) only.
    mariadb-install-db --defaults-file="$MARIADB_CNF" --user=mysql --skip-test-db \
        --auth-root-authentication-method=socket >"$MARIADB_STATE/install-db.log" 2>&1 || {
        tail -n 20 "$MARIADB_STATE/install-db.log" >&2
        die "mariadb-install-db failed (log: $MARIADB_STATE/install-db.log)"
    }
}

mariadb_sql() { # SQL on stdin, as root over the private socket (unix_socket auth)
    mariadb --no-defaults --socket="$MARIADB_SOCKET" -u root --batch "$@"
}

mariadb_provision() {
    mariadb_sql <<EOF
CREATE USER IF NOT EXISTS '$MARIADB_ADMIN_USER'@'%';
ALTER USER '$MARIADB_ADMIN_USER'@'%' IDENTIFIED BY '$MARIADB_ADMIN_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_ADMIN_USER'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '$MARIADB_APP_USER'@'%';
ALTER USER '$MARIADB_APP_USER'@'%' IDENTIFIED BY '$MARIADB_APP_PASSWORD';
CREATE DATABASE IF NOT EXISTS \`$MARIADB_APP_USER\`;
GRANT ALL PRIVILEGES ON \`$MARIADB_APP_USER\`.* TO '$MARIADB_APP_USER'@'%';
EOF
}

mariadb_write_env() {
    install -d -m 0755 "$STATE/env.d"
    cat >"$STATE/env.d/mariadb.sh" <<EOF
export DBFLEET_TEST_MYSQL_URL=mysql://$MARIADB_ADMIN_USER@127.0.0.1:$MARIADB_PORT/mysql
export DBFLEET_TEST_MYSQL_PASSWORD=$MARIADB_ADMIN_PASSWORD
export DBFLEET_TEST_MYSQL_APP_URL=mysql://$MARIADB_APP_USER@127.0.0.1:$MARIADB_PORT/$MARIADB_APP_USER
export DBFLEET_TEST_MYSQL_APP_PASSWORD=$MARIADB_APP_PASSWORD
export DBFLEET_TEST_MYSQL_SOCKET=$MARIADB_SOCKET
EOF
}

mariadb_start() {
    local starter=
    mariadb_install
    ensure_user mysql
    install -d -m 0755 "$STATE"
    install -d -o mysql -g mysql -m 0755 "$MARIADB_STATE"
    install -d -o mysql -g mysql -m 0750 "$MARIADB_BINLOG"
    install -d -o mysql -g mysql -m 0755 "$MARIADB_RUN"
    if mariadb_running; then
        log "MariaDB already running in $MARIADB_DATA"
    else
        mariadb_configure
        mariadb_initdb
        rm -f "$MARIADB_PIDFILE" "$MARIADB_SOCKET" "$MARIADB_SOCKET.lock" # stale
        log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
        as_user mysql setsid /usr/sbin/mariadbd --defaults-file="$MARIADB_CNF" \
            </dev/null >>"$MARIADB_STATE/mariadbd.out" 2>&1 &
        starter=$!
    fi
    local i
    for i in $(seq 1 120); do
        if mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" -u root ping >/dev/null 2>&1; then
            break
        fi
        # gave up, or the server we started has exited
        if [[ $i -eq 120 ]] || { [[ -n $starter ]] && ! kill -0 "$starter" 2>/dev/null; }; then
            tail -n 20 "$MARIADB_LOG" >&2 || true
            die "MariaDB did not start (log: $MARIADB_LOG)"
        fi
        sleep 0.5
    done
    mariadb_provision
    mariadb_write_env
    log "MariaDB ready: $(mariadb_sql -N -e 'SELECT VERSION()')"
}

mariadb_stop() {
    local pid i
    if pid=$(mariadb_pid); then
        log "stopping MariaDB"
        kill -TERM "$pid"
        for i in $(seq 1 120); do
            [[ -r /proc/$pid/stat ]] || break
            [[ $i -eq 120 ]] && die "MariaDB (pid $pid) did not stop within 60 s"
            sleep 0.5
        done
    else
        log "MariaDB is not running"
    fi
    rm -f "$STATE/env.d/mariadb.sh"
}

mariadb_status() {
    if mariadb_running; then
        log "MariaDB running on 127.0.0.1:$MARIADB_PORT: $(mariadb_sql -N -e 'SELECT VERSION()')"
    else
        log "MariaDB not running"
        return 1
    fi
}
