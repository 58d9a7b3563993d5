# tap.sh — what the shell tests share: TAP counting, and starting a fake
# service.  Source it after scripts/common.sh; it sets n, failed and pids.
n=0
failed=0
pids=()
FAKES=$(cd "$(dirname "${BASH_SOURCE[0]}")/../fakes" && pwd)

ok() {  # ok <exit status> <description> [diagnostic]
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else
        echo "not ok $n - $2"; [ -n "${3:-}" ] && echo "# $3"; failed=$((failed + 1)); fi
}
is() {  # is <got> <expected> <description>
    [ "$1" = "$2" ]; ok $? "$3" "got '$1', expected '$2'"
}
# The plan line last; non-zero exit when anything failed.
tap_done() {
    echo "1..$n"
    [ "$failed" -eq 0 ] || { echo "# $failed of $n failed"; exit 1; }
}
# Start test/fakes/<script> on a free port, written to <portfile>; its pid
# goes into pids for the caller's cleanup.
start_fake() {  # start_fake <script> <portfile> args...
    local script=$1 portfile=$2; shift 2
    python3 "$FAKES/$script" --port 0 --port-file "$portfile" "$@" >"$portfile.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do [ -s "$portfile" ] && return 0; sleep 0.1; done
    echo "could not start $script"; cat "$portfile.log"; exit 1
}
