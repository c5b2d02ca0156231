# shellcheck shell=bash
# Debian's prometheus package for promtool (the metrics tests run `promtool
# check metrics` on live output and `promtool test rules` on the shipped
# alert rules). Nothing runs: "start" installs it when promtool is missing
# and records its path as DBFLEET_TEST_PROMTOOL. Sourced by
# scripts/test-servers.sh.

SERVERS+=(promtool)

promtool_start() {
    command -v promtool >/dev/null 2>&1 || apt_install prometheus
    local bin
    bin=$(command -v promtool) || die "prometheus installed but promtool is missing"
    install -d -m 0755 "$STATE/env.d"
    echo "export DBFLEET_TEST_PROMTOOL=$bin" >"$STATE/env.d/promtool.sh"
    log "promtool: $("$bin" --version 2>&1 | head -1)"
}

promtool_stop() { :; }

promtool_status() {
    if command -v promtool >/dev/null 2>&1; then
        log "promtool: installed at $(command -v promtool)"
    else
        log "promtool: not installed"
        return 1
    fi
}
