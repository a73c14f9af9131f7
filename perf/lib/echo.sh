# Helpers for the reactor benchmarks (reactor-echo, reactor-idle): build, free ports, servers (source it).
# median and the rest of the harness's helpers
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
perf_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo_root=$(cd "$perf_root/.." && pwd)
c_bin="$perf_root/.build/c"

# Builds the perf package in release mode (quietly) and the C helpers in perf/c.
build_perf() {
    (cd "$perf_root" && swift build -c release "$@" 2>&1 | grep -E "error|warning: unre" >&2 || true)
    mkdir -p "$c_bin"
    for source in "$perf_root"/c/*.c; do
        local name
        name=$(basename "$source" .c)
        if [ ! -x "$c_bin/$name" ] || [ "$source" -nt "$c_bin/$name" ]; then
            gcc -O2 -Wall -o "$c_bin/$name" "$source" -lssl -lcrypto
        fi
    done
}

# A free loopback TCP port.
# start_server NAME COMMAND...: starts COMMAND in the background, waits for it to print "ready",
# and sets server_pid. Every server is killed by the EXIT trap.
server_pids=()
start_server() {
    local name=$1
    shift
    local fifo
    fifo=$(mktemp -u)
    mkfifo "$fifo"
    "$@" >"$fifo" 2>&1 &
    server_pid=$!
    server_pids+=("$server_pid")
    if ! timeout 20 grep -q -m1 ready <"$fifo"; then
        echo "$name did not start" >&2
        exit 1
    fi
    # Keep draining its output so it never blocks on a full pipe.
    (cat "$fifo" >/dev/null; rm -f "$fifo") &
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

cleanup_servers() {
    for pid in "${server_pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
    wait 2>/dev/null || true
}
trap cleanup_servers EXIT


# ratio A B with two decimals
