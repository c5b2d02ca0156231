# shellcheck shell=bash
# Debian's chromium for the dashboard's browser tests (Playwright for Python
# drives /usr/bin/chromium; no browser is ever downloaded). Nothing runs:
# "start" installs it when /usr/bin/chromium is missing and records its path
# as DBFLEET_TEST_CHROMIUM; "stop" has nothing to stop. Sourced by
# scripts/test-servers.sh.

SERVERS+=(chromium)

CHROMIUM_BIN=/usr/bin/chromium

chromium_start() {
    [[ -x $CHROMIUM_BIN ]] || apt_install chromium
    [[ -x $CHROMIUM_BIN ]] || die "chromium installed but $CHROMIUM_BIN is missing"
    install -d -m 0755 "$STATE/env.d"
    echo "export DBFLEET_TEST_CHROMIUM=$CHROMIUM_BIN" >"$STATE/env.d/chromium.sh"
    log "chromium: $("$CHROMIUM_BIN" --version 2>/dev/null || echo "$CHROMIUM_BIN")"
}

chromium_stop() { :; }

chromium_status() {
    if [[ -x $CHROMIUM_BIN ]]; then
        log "chromium: installed at $CHROMIUM_BIN"
    else
        log "chromium: not installed"
        return 1
    fi
}
