# perf/lib/common.sh: shared by perf/bench/* scripts. Builds apus, starts and stops the systems
# under test, runs `apus load` against them and records each run's JSON under perf/results/.
# Every run stays on loopback and is bounded in time.
#
# A benchmark calls `perf_begin` once (a private scratch directory and an EXIT trap that stops
# everything it started), then `start_target NAME` for each system, `run_load BENCH NAME ...` for
# each measurement. Systems under test:
#   dovecot, nginx, imapproxy, perdition   the peers (../shared/peers), nginx/imapproxy/perdition
#                                          in front of Dovecot 10143
#   nginx-apus, imapproxy-apus             second instances of the peers' nginx and imapproxy, in
#                                          front of apus-backend (see start_peer_before_apus)
#   apus-backend                           `apus run --service imap4be` with the peers' users and a
#                                          copy of Dovecot's Maildirs, and a local (UNIX) socket
#   apus-frontend                          `apus run --service imap4` in front of apus-backend, the
#                                          hop over apus-backend's local socket (same host)
#   apus-frontend-tcp                      the same over loopback TCP (the hop nginx and imapproxy use)
#   apus-frontend-dovecot                  `apus run --service imap4` in front of Dovecot 10143
#   responder                              perf/responder (a C server answering every command at once)
# Apus listens on ephemeral ports (port 0) and the script reads the ports it got from its output.

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$PERF_DIR/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$(cd "$REPO_DIR/../shared/peers" 2>/dev/null && pwd || echo /work/shared/peers)}
APUS=${APUS:-$REPO_DIR/.build/release/apus}
RESULTS_DIR=${RESULTS_DIR:-$PERF_DIR/results}
# The peers' passwd-file and Maildirs (start-dovecot.sh writes them).
PEER_USERS_FILE=/tmp/peers/dovecot/users
PEER_MAIL_DIR=/tmp/peers/mail
# The mix of issue 5 (back end): select, fetch headers and flags, fetch bodies, store, search,
# append, expunge, idle, logout (a logout is followed by a new login).
BACKEND_MIX="select=3,fetch-flags=20,fetch-headers=10,fetch-body=5,store=10,search=5,append=4,expunge=1,idle=1,logout=1"
# How long a server may take to open its port.
START_TIMEOUT_SECONDS=${START_TIMEOUT_SECONDS:-30}
mkdir -p "$RESULTS_DIR"

log() { echo "perf: $*" >&2; }

# perf_begin: a scratch directory for this run ($RUN_DIR) and a trap that stops whatever the
# benchmark started and removes the scratch directory, however the script ends.
perf_begin() {
    RUN_DIR=$(mktemp -d /tmp/apus-perf.XXXXXX)
    STARTED_PEERS=()
    STARTED_APUS_PEERS=()
    trap perf_end EXIT
    trap 'exit 130' INT TERM
}

perf_end() {
    local instance pidfile pid peer
    # A generator still running (the benchmark was interrupted): Ctrl-C it, as a person would.
    for pidfile in "$RUN_DIR"/load.*.pid; do
        pid=$(cat "$pidfile" 2>/dev/null) || continue  # its subshell may just have forgotten it
        kill -INT "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # The peers' proxies before Apus's back end stop before it does.
    for peer in "${STARTED_APUS_PEERS[@]}"; do
        PEER_ROOT=$(peer_root_before_apus) "$PEERS_DIR/stop-$peer.sh" >&2 || true
    done
    for instance in "$RUN_DIR"/apus-*/; do
        [ -d "$instance" ] && stop_apus "$(basename "$instance")"
    done
    stop_target responder
    # Proxies first, Dovecot (which they stand in front of) last.
    for ((i = ${#STARTED_PEERS[@]} - 1; i >= 0; i--)); do
        peer=${STARTED_PEERS[$i]}
        "$PEERS_DIR/stop-$peer.sh" >&2 || true
    done
    rm -rf "$RUN_DIR"
}

# remember_load PID: an `apus load` running in the background, for perf_end to stop if the run is cut
# short; forget_load PID once it has been waited for (its pid may then belong to someone else).
remember_load() { echo "$1" >"$RUN_DIR/load.$1.pid"; }
forget_load() { rm -f "$RUN_DIR/load.$1.pid"; }

# apus_load ARGS...: `apus load` waited for, but remembered, so an interrupted benchmark stops it too
# (a foreground child inside $(...) would outlive the EXIT trap).
apus_load() {
    local pid status=0
    "$APUS" load "$@" &
    pid=$!
    remember_load "$pid"
    wait "$pid" || status=$?
    forget_load "$pid"
    return "$status"
}

build_apus() {
    log "building apus (release)"
    (cd "$REPO_DIR" && swift build -c release --product apus >&2)
}

# The responder of load-ceiling.
build_responder() {
    cc -O2 -Wall -o "$RUN_DIR/responder" "$PERF_DIR/responder/responder.c" >&2
}

# wait_for_port PORT: true once 127.0.0.1:PORT accepts a connection, false after START_TIMEOUT_SECONDS.
wait_for_port() {
    local port=$1 tries=$((START_TIMEOUT_SECONDS * 10))
    for _ in $(seq "$tries"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# target_port NAME: the plaintext IMAP port of a system under test.
target_port() {
    case $1 in
        dovecot) echo 10143 ;;
        nginx) echo 20143 ;;
        imapproxy) echo 30143 ;;
        perdition) echo 40143 ;;
        apus-*) cat "$RUN_DIR/$1/port" ;;
        nginx-apus | imapproxy-apus) cat "$(peer_root_before_apus)/$1.port" ;;
        responder) cat "$RUN_DIR/responder.port" ;;
        *) echo "unknown target $1" >&2; return 1 ;;
    esac
}

# start_peer NAME: a peer from ../shared/peers, remembered for perf_end unless it was already running
# (then someone else started it and it is theirs to stop).
start_peer() {
    local peer=$1 pidfile
    pidfile=$(target_pidfile "$peer")
    if [ -s "$pidfile" ] && kill -0 "$(tr -dc 0-9 <"$pidfile")" 2>/dev/null; then
        [[ " ${STARTED_PEERS[*]} " == *" $peer "* ]] || log "$peer was already running: using it as it is"
        return 0
    fi
    # RESET_MAIL=1 starts Dovecot from empty Maildirs (stress runs append and move mail, so
    # mailboxes grow from run to run; a benchmark that compares servers resets them first).
    PEER_RESET_MAIL=${RESET_MAIL:-0} "$PEERS_DIR/start-$peer.sh" >&2 </dev/null || return 1
    STARTED_PEERS+=("$peer")
}

# The private PEER_ROOT of the peers' proxies that stand in front of Apus's back end: their own
# configuration, pid files and logs, apart from the instances in front of Dovecot (/tmp/peers).
peer_root_before_apus() { echo "$RUN_DIR/peers-before-apus"; }

# free_port: a loopback port nobody listens on now. The peers' scripts take fixed port numbers,
# not port 0, so the harness picks free ones for the second instances (a race with another
# program binding the same port in between is possible but would only fail the start).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_peer_before_apus PEER: the peers' nginx-mail or imapproxy with apus-backend as their
# "Dovecot" (the start scripts read DOVECOT_IMAP_PORT and their own ports from the environment),
# under a private PEER_ROOT so they run beside the instances in front of Dovecot.
start_peer_before_apus() {
    local peer=$1 root
    root=$(peer_root_before_apus)
    [ -s "$RUN_DIR/apus-backend/port" ] || start_target apus-backend || return 1
    mkdir -p "$root"
    # imapproxy drops to nobody and then maps its statistics file under $root: let it reach it.
    chmod 0711 "$RUN_DIR"
    chmod 0755 "$root"
    local imap_port
    imap_port=$(free_port)
    (
        export PEER_ROOT=$root DOVECOT_IMAP_PORT
        DOVECOT_IMAP_PORT=$(target_port apus-backend)
        case $peer in
            nginx-mail)
                NGINX_IMAP_PORT=$imap_port NGINX_IMAPS_PORT=$(free_port) NGINX_AUTH_PORT=$(free_port) \
                    "$PEERS_DIR/start-nginx-mail.sh"
                ;;
            imapproxy) IMAPPROXY_PORT=$imap_port "$PEERS_DIR/start-imapproxy.sh" ;;
        esac
    ) >&2 </dev/null || return 1
    STARTED_APUS_PEERS+=("$peer")
    case $peer in
        nginx-mail) echo "$imap_port" >"$root/nginx-apus.port" ;;
        imapproxy) echo "$imap_port" >"$root/imapproxy-apus.port" ;;
    esac
}

# start_target NAME: starts it (and what it stands in front of) with the peers' users and mail.
start_target() {
    case $1 in
        dovecot) start_peer dovecot ;;
        nginx) start_peer dovecot && start_peer nginx-mail ;;
        imapproxy | perdition) start_peer dovecot && start_peer "$1" ;;
        nginx-apus) start_peer_before_apus nginx-mail ;;
        imapproxy-apus) start_peer_before_apus imapproxy ;;
        apus-backend) start_peer dovecot && start_apus apus-backend imap4be ;;
        apus-frontend)
            [ -s "$RUN_DIR/apus-backend/port" ] || start_target apus-backend || return 1
            start_apus apus-frontend imap4 "local=unix:$(backend_local_socket)"
            ;;
        apus-frontend-tcp)
            [ -s "$RUN_DIR/apus-backend/port" ] || start_target apus-backend || return 1
            start_apus apus-frontend-tcp imap4 "local=127.0.0.1:$(target_port apus-backend)"
            ;;
        apus-frontend-dovecot) start_peer dovecot && start_apus apus-frontend-dovecot imap4 "dovecot=127.0.0.1:10143" ;;
        responder)
            build_responder
            "$RUN_DIR/responder" 0 >"$RUN_DIR/responder.port" &
            echo $! >"$RUN_DIR/responder.pid"
            for _ in $(seq 50); do [ -s "$RUN_DIR/responder.port" ] && break; sleep 0.1; done
            ;;
        *) log "unknown target $1"; return 1 ;;
    esac
}

# The pid file of a target's root process, for CPU accounting (peer-cpu.py).
target_pidfile() {
    case $1 in
        dovecot) echo /tmp/peers/dovecot/run/master.pid ;;
        nginx | nginx-mail) echo /tmp/peers/nginx/nginx.pid ;;
        imapproxy) echo /tmp/peers/imapproxy/imapproxy.pid ;;
        perdition) echo /tmp/peers/perdition/perdition.pid ;;
        nginx-apus) echo "$(peer_root_before_apus)/nginx/nginx.pid" ;;
        imapproxy-apus) echo "$(peer_root_before_apus)/imapproxy/imapproxy.pid" ;;
        apus-*) echo "$RUN_DIR/$1/apus.pid" ;;
        responder) echo "$RUN_DIR/responder.pid" ;;
    esac
}

# The local socket apus-backend listens on besides TCP (in its run directory).
backend_local_socket() { echo "$RUN_DIR/apus-backend/run/imap4be-imap.sock"; }

# start_apus INSTANCE SERVICE [BACKENDS]: one Apus service in its own process (`apus run --service`),
# so each is measured (CPU, memory) on its own. The configuration lives in $RUN_DIR/INSTANCE/apus.conf:
#   imap4be  the peers' passwd-file and a copy of Dovecot's Maildirs (the same users and messages),
#            limits off (load tests open hundreds of sessions per user from one address), the front
#            ends' addresses trusted (UNAUTHENTICATE, forwarded client addresses), a local socket
#            in its run directory (trusted likewise) for front ends on this host.
#   imap4    in front of BACKENDS (name=address:port or name=unix:/path), a pool large enough for every session
#            (IDLE sessions hold a back-end connection each), the hop from APUS_SOURCE_ADDRESSES.
# Listeners use port 0; the ports the service got are read from its output. APUS_BINARY runs another
# build of apus (a copy without debug information for valgrind, say), APUS_WRAPPER a tool around it,
# APUS_RUN_OPTIONS more `apus run` arguments (`-o imap4.listen=127.0.0.1:P`: overrides of the file).
start_apus() {
    local instance=$1 service=$2 backends=${3:-}
    local dir="$RUN_DIR/$instance"
    mkdir -p "$dir/data/users"
    # Apus marks users/ as the top of directory hierarchies (chattr +T) when it makes it, so ext4
    # gives each user's Maildir a block group of its own; mark it here too, since the Maildirs are
    # copied in before Apus starts.
    [ "${APUS_NO_TOPDIR:-0}" = 1 ] || chattr +T "$dir/data/users" 2>/dev/null || true
    if [ "$service" = imap4be ]; then
        cp "$PEER_USERS_FILE" "$dir/passwd"
        local maildir
        for maildir in "$PEER_MAIL_DIR"/*/Maildir; do
            [ -d "$maildir" ] || continue
            # Apus reads dovecot-uidlist (the same UIDs) and dovecot-keywords; Dovecot's binary
            # index and cache files are Dovecot's alone.
            local user
            user=$(basename "$(dirname "$maildir")")
            cp -a "$maildir" "$dir/data/users/$user"
            find "$dir/data/users/$user" -name 'dovecot.index*' -delete
        done
    else
        : >"$dir/passwd"
    fi
    cat >"$dir/apus.conf" <<EOF
# Written by perf/lib/common.sh for one benchmark run; removed when it ends.
[global]
run_dir = $dir/run
data_dir = $dir/data
users_file = $dir/passwd
log_file = $dir/apus-daemon.log
log_level = ${APUS_LOG_LEVEL:-warning}
certificate = $dir/tls/cert.pem
private_key = $dir/tls/key.pem
login_disabled_on_plain = no
shutdown_timeout = 5s
max_connections_per_address = 0
failed_login_delay = 10ms
failed_login_delay_max = 100ms

[imap4be]
listen = 127.0.0.1:0
tls_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
trusted_proxies = 127.0.0.0/8
local_socket = $dir/run/imap4be-imap.sock
max_connections_per_user = 0
auth_cache_ttl = 60s

[imap4]
listen = 127.0.0.1:0
tls_listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
backends = ${backends:-local=127.0.0.1:1143}
pool_min_idle = ${APUS_POOL_MIN_IDLE:-8}
pool_max = ${APUS_POOL_MAX:-100000}
pool_checkout_timeout = 30s
EOF
    if [ -n "${APUS_SOURCE_ADDRESSES:-}" ]; then
        echo "source_addresses = $APUS_SOURCE_ADDRESSES" >>"$dir/apus.conf"
    fi
    # APUS_STORE_FSYNC=always|optimized sets the back end's [store] fsync (unset: its default).
    if [ -n "${APUS_STORE_FSYNC:-}" ]; then
        printf '\n[store]\nfsync = %s\n' "$APUS_STORE_FSYNC" >>"$dir/apus.conf"
    fi
    (
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        # APUS_WRAPPER runs the service under a tool (valgrind --tool=callgrind ...); the tool keeps the pid.
        # shellcheck disable=SC2086
        exec ${APUS_WRAPPER:-} "${APUS_BINARY:-$APUS}" run --service "$service" --config "$dir/apus.conf" \
            ${APUS_RUN_OPTIONS:-}
    ) >"$dir/apus.log" 2>&1 </dev/null &
    echo $! >"$dir/apus.pid"
    # `imap4be: listening on 127.0.0.1:P1, 127.0.0.1:P2 (TLS); admin http://127.0.0.1:P3/`
    local line=""
    for _ in $(seq $((START_TIMEOUT_SECONDS * 10))); do
        line=$(grep -m1 "^$service: listening on" "$dir/apus.log" 2>/dev/null) && break
        kill -0 "$(cat "$dir/apus.pid")" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        log "$instance did not start: $(tail -5 "$dir/apus.log")"
        return 1
    fi
    sed -E 's/^[^:]+: listening on [0-9.]+:([0-9]+).*/\1/' <<<"$line" >"$dir/port"
    sed -E 's|.*admin http://([^/]+)/.*|\1|' <<<"$line" >"$dir/admin"
    if ! wait_for_port "$(cat "$dir/port")"; then
        log "$instance does not accept connections on $(cat "$dir/port"): see $dir/apus.log"
        return 1
    fi
    log "$instance ($service) pid $(cat "$dir/apus.pid") on 127.0.0.1:$(cat "$dir/port"), admin $(cat "$dir/admin")"
}

# stop_apus INSTANCE: SIGTERM (a graceful stop), SIGKILL after 15 s, and waits for it to be gone.
stop_apus() {
    local pidfile="$RUN_DIR/$1/apus.pid" pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$1 (pid $pid) still running 15 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# stop_target NAME: stops only what these scripts started.
stop_target() {
    case $1 in
        apus-*) stop_apus "$1" ;;
        responder)
            local pidfile="$RUN_DIR/responder.pid"
            if [ -s "$pidfile" ]; then
                kill "$(cat "$pidfile")" 2>/dev/null || true
                wait "$(cat "$pidfile")" 2>/dev/null || true
                rm -f "$pidfile"
            fi
            ;;
        *) log "peers are stopped by perf_end" ;;
    esac
}

# run_load BENCH TARGET [apus load options...]: one bounded run; prints the JSON path.
# The JSON gets commit, date, machine and the target's CPU use (peer-cpu.py) before it is kept.
# CPU_TARGETS (default: TARGET) names every process tree to account, e.g. "apus-frontend apus-backend".
run_load() {
    local bench=$1 target=$2
    shift 2
    local port stamp json watched=() name
    port=$(target_port "$target")
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    json="$RUN_DIR/$bench-$target-$stamp.json"
    for name in ${CPU_TARGETS:-$target}; do watched+=("$name=$(target_pidfile "$name")"); done
    # A run stops with commands in flight: give the server a moment to finish them, so they do not
    # land in the next run (where they would look like another client's changes).
    sleep "${SETTLE_SECONDS:-2}"
    python3 "$PEERS_DIR/peer-cpu.py" snapshot "${watched[@]}" >"$RUN_DIR/cpu-before.json" 2>/dev/null || true
    local started=$SECONDS
    apus_load --host 127.0.0.1 --port "$port" --label "$target" --quiet --json "$json" "$@" >&2 || true
    local elapsed=$((SECONDS - started))
    python3 "$PEERS_DIR/peer-cpu.py" snapshot "${watched[@]}" >"$RUN_DIR/cpu-after.json" 2>/dev/null || true
    record_result "$bench" "$target" "$json" "$elapsed"
}

# record_result BENCH TARGET JSON SECONDS: adds provenance and CPU, keeps it under perf/results/BENCH/.
record_result() {
    local bench=$1 target=$2 json=$3 seconds=$4
    mkdir -p "$RESULTS_DIR/$bench"
    local kept
    kept="$RESULTS_DIR/$bench/$(basename "$json")"
    python3 - "$json" "$kept" "$bench" "$target" "$REPO_DIR" "$RUN_DIR" <<'PY'
import json, os, platform, subprocess, sys
source, kept, bench, target, repo, run = sys.argv[1:7]
with open(source) as f:
    data = json.load(f)
def sh(*args):
    try:
        return subprocess.run(args, cwd=repo, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
model = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
data["bench"] = bench
data["target"] = target
data["commit"] = sh("git", "rev-parse", "HEAD")
data["date"] = sh("date", "-u", "+%Y-%m-%dT%H:%M:%SZ")
data["machine"] = {"host": platform.node(), "cpus": os.cpu_count(), "cpu": model, "kernel": platform.release()}
try:
    # Load average at the end of the run: these machines are shared, a high figure marks a disturbed run.
    data["machine"]["loadavg"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
except (OSError, ValueError):
    pass
try:
    before = json.load(open(os.path.join(run, "cpu-before.json")))
    after = json.load(open(os.path.join(run, "cpu-after.json")))
    hz = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for name, value in after.get("peers", {}).items():
        if name in before.get("peers", {}):
            cpu[name] = round((value["ticks"] - before["peers"][name]["ticks"]) / hz, 2)
    if cpu:
        data["server_cpu_seconds"] = cpu
        if data.get("commands_total"):
            data["server_cpu_ms_per_command"] = {k: round(v * 1000 / data["commands_total"], 4) for k, v in cpu.items()}
except (OSError, ValueError, KeyError, TypeError):
    pass
with open(kept, "w") as f:
    json.dump(data, f, indent=1)
print(kept)
PY
}

# figure JSON PATH...: a number from a result file, by keys (e.g. `figure F commands all p99_ms`).
figure() {
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    d = d.get(key, {}) if isinstance(d, dict) else {}
print(d if d != {} else 0)' "$@"
}

# median of numbers on the command line.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ratio A B: A/B to two decimals (0 when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b > 0 ? a / b : 0) }'; }

# sample_messages: prints the path of an mbox of varied, deterministic messages (the peers'
# gen-mbox.py), the same for every server of a run, for `apus load --message-file`.
sample_messages() {
    [ -s "$RUN_DIR/sample.mbox" ] || python3 "$PEERS_DIR/gen-mbox.py" -n "${SAMPLE_MESSAGES:-200}" "$RUN_DIR/sample.mbox" >&2
    echo "$RUN_DIR/sample.mbox"
}

# prime_mail [MESSAGES_PER_USER]: fills every peer user's INBOX in Dovecot to MESSAGES_PER_USER
# (default 20) from the sample mbox, before Apus's back end starts and copies the Maildirs: both
# servers then begin with the same mail, and churn sessions have a message to fetch.
prime_mail() {
    local count=${1:-20} messages
    messages=$(sample_messages)
    # PEER_TOPDIR=1 gives Dovecot's users the layout Apus makes for its own (chattr +T on the mail
    # root: each home in a block group of its own); it takes effect for homes made after it, so
    # with RESET_MAIL=1. Unset, Dovecot runs on the peer rig's layout, as an administrator's
    # /home would be.
    if [ "${PEER_TOPDIR:-0}" = 1 ]; then chattr +T "$PEER_MAIL_DIR" || return 1; fi
    log "priming Dovecot's mailboxes with $count messages per user"
    apus_load --host 127.0.0.1 --port "$(target_port dovecot)" --users 'user%d:1-200' --clients 200 \
        --mix fetch-flags=1 --prefill "$count" --message-file "$messages" --commands $((200 * (count + 2))) \
        --duration 120s --quiet >"$RUN_DIR/prime.log" 2>&1 || { log "priming failed: $(tail -3 "$RUN_DIR/prime.log")"; return 1; }
}
