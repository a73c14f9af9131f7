# perf/lib/common.sh: shared by perf/bench/* scripts. Builds apus, starts and stops the systems
# under test, runs `apus load` against them and records each run's JSON under perf/results/.
# Every run stays on loopback and is bounded in time.
#
# Systems under test are one line each in target_port and start_target below: to add Apus, its
# line already names the port and the start command (see apus-backend / apus-frontend).

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$PERF_DIR/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$(cd "$REPO_DIR/../shared/peers" 2>/dev/null && pwd || echo /work/shared/peers)}
APUS=${APUS:-$REPO_DIR/.build/release/apus}
RESULTS_DIR=${RESULTS_DIR:-$PERF_DIR/results}
RUN_DIR=${RUN_DIR:-/tmp/apus-perf}
mkdir -p "$RUN_DIR" "$RESULTS_DIR"

log() { echo "perf: $*" >&2; }

build_apus() {
    log "building apus (release)"
    (cd "$REPO_DIR" && swift build -c release --product apus >&2)
}

# The responder of load-ceiling: built once into $RUN_DIR.
build_responder() {
    cc -O2 -Wall -o "$RUN_DIR/responder" "$PERF_DIR/responder/responder.c" >&2
}

# target_port NAME: the plaintext IMAP port of a system under test.
target_port() {
    case $1 in
        dovecot) echo 10143 ;;
        nginx) echo 20143 ;;
        imapproxy) echo 30143 ;;
        perdition) echo 40143 ;;
        apus-backend) echo "${APUS_BACKEND_PORT:-11143}" ;;
        apus-frontend) echo "${APUS_FRONTEND_PORT:-11144}" ;;
        responder) cat "$RUN_DIR/responder.port" ;;
        *) echo "unknown target $1" >&2; return 1 ;;
    esac
}

# start_target NAME: starts it (and what it stands in front of) with the peers' users and mail.
start_target() {
    case $1 in
        # RESET_MAIL=1 starts Dovecot from empty Maildirs (stress runs append and move mail, so
        # mailboxes grow from run to run; a benchmark that compares servers resets them first).
        dovecot) PEER_RESET_MAIL=${RESET_MAIL:-0} "$PEERS_DIR/start-dovecot.sh" >&2 </dev/null ;;
        nginx) "$PEERS_DIR/start-dovecot.sh" >&2 </dev/null && "$PEERS_DIR/start-nginx-mail.sh" >&2 </dev/null ;;
        imapproxy) "$PEERS_DIR/start-dovecot.sh" >&2 </dev/null && "$PEERS_DIR/start-imapproxy.sh" >&2 </dev/null ;;
        perdition) "$PEERS_DIR/start-dovecot.sh" >&2 </dev/null && "$PEERS_DIR/start-perdition.sh" >&2 </dev/null ;;
        apus-backend) start_apus backend ;;
        apus-frontend) start_apus frontend ;;
        responder)
            build_responder
            "$RUN_DIR/responder" 0 > "$RUN_DIR/responder.port" &
            echo $! > "$RUN_DIR/responder.pid"
            for _ in $(seq 50); do [ -s "$RUN_DIR/responder.port" ] && break; sleep 0.1; done
            ;;
        *) log "unknown target $1"; return 1 ;;
    esac
}

# The pid file of a target's root process, for CPU accounting (peer-cpu.py).
target_pidfile() {
    case $1 in
        dovecot) echo /tmp/peers/dovecot/run/master.pid ;;
        nginx) echo /tmp/peers/nginx/nginx.pid ;;
        imapproxy) echo /tmp/peers/imapproxy/imapproxy.pid ;;
        perdition) echo /tmp/peers/perdition/perdition.pid ;;
        apus-backend | apus-frontend) echo "$RUN_DIR/apus.pid" ;;
        responder) echo "$RUN_DIR/responder.pid" ;;
    esac
}

# Apus: `apus run` with the peers' users (passwd-file) and a copy of their Maildirs. Needs the
# back end (issue: IMAPBackend) and `apus run` (Service) from main; until then it says so and fails.
start_apus() {
    local role=$1
    if ! "$APUS" run --help >/dev/null 2>&1; then
        log "apus run is not available in this build: skipping Apus ($role)"
        return 1
    fi
    "$APUS" run --backend-port "$(target_port apus-backend)" --frontend-port "$(target_port apus-frontend)" \
        --users-file /tmp/peers/dovecot/users --data "$RUN_DIR/apus-data" >"$RUN_DIR/apus.log" 2>&1 &
    echo $! > "$RUN_DIR/apus.pid"
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$(target_port "apus-$role")") 2>/dev/null && return 0
        sleep 0.1
    done
    log "apus did not start: see $RUN_DIR/apus.log"
    return 1
}

# stop_target NAME: stops only what these scripts started (recorded pids; the peers' own stop scripts).
stop_target() {
    case $1 in
        responder | apus-backend | apus-frontend)
            local pidfile
            pidfile=$(target_pidfile "$1")
            if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
            ;;
        *) "$PEERS_DIR/stop-all.sh" >&2 || true ;;
    esac
}

# run_load BENCH TARGET [apus load options...]: one bounded run; prints the JSON path.
# The JSON gets commit, date, machine and the target's CPU use (peer-cpu.py) before it is kept.
run_load() {
    local bench=$1 target=$2
    shift 2
    local port stamp json pidfile
    port=$(target_port "$target")
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    json="$RUN_DIR/$bench-$target-$stamp.json"
    pidfile=$(target_pidfile "$target")
    # A run stops with commands in flight: give the server a moment to finish them, so they do not
    # land in the next run (where they would look like another client's changes).
    sleep "${SETTLE_SECONDS:-2}"
    python3 "$PEERS_DIR/peer-cpu.py" snapshot "$target=$pidfile" > "$RUN_DIR/cpu-before.json" 2>/dev/null || true
    local started=$SECONDS
    "$APUS" load --host 127.0.0.1 --port "$port" --label "$target" --quiet --json "$json" "$@" >&2 || true
    local elapsed=$((SECONDS - started))
    python3 "$PEERS_DIR/peer-cpu.py" snapshot "$target=$pidfile" > "$RUN_DIR/cpu-after.json" 2>/dev/null || true
    record_result "$bench" "$target" "$json" "$elapsed"
}

# record_result BENCH TARGET JSON SECONDS: adds provenance and CPU, keeps it under perf/results/BENCH/.
record_result() {
    local bench=$1 target=$2 json=$3 seconds=$4
    mkdir -p "$RESULTS_DIR/$bench"
    local kept="$RESULTS_DIR/$bench/$(basename "$json")"
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

# figure JSON FIELD: a top-level number from a result file.
figure() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# median of numbers on the command line.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
