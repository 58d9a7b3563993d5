#!/usr/bin/env bash
# The README's main command, as a user runs it: scripts/demo.sh offline and
# with --real against the fakes.  Each must exit 0, finish the three text
# documents (the scanned PDF fails its parse in mock mode: the built-in
# parser reads no PDF), and end with the question's nearest chunks — in
# mock mode the quarterly report's summary first, as the mock embedder
# brings texts that share words together.  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

row() {  # the status of one file in the demo's job table
    sed -n '/^== jobs/,/^== each/p' "$out" | awk -F'|' -v f="$1" '$1 ~ f { gsub(/ /, "", $2); print $2 }'
}
nearest() {  # the question's answer rows: filename, chunk_index, heading_path
    sed -n '/^== asking the corpus/,$p' "$out" | awk -F'|' 'NF >= 5 && $2 ~ /[0-9]/ {
        for (i = 1; i <= 3; i++) gsub(/^ +| +$/, "", $i); print $1 "|" $2 "|" $3 }'
}

for mode in real mock; do
    bash scripts/demo.sh $([ $mode = real ] && echo --real) >"$out" 2>&1
    ok $? "scripts/demo.sh exits 0 ($mode)" "$(tail -20 "$out")"
    is "$(row onboarding.txt) $(row quarterly-report.md) $(row release-notes.html)" "complete complete complete" \
       "the three text documents complete ($mode)"
    is "$(nearest | wc -l)" 3 "it ends with the question's 3 nearest chunks ($mode)"
done
# The last run was mock's: only its order means something (the fake's
# vectors are hashes of the text).
is "$(row scanned-invoice.pdf)" "failed_parse" "the scanned PDF fails its parse in mock mode, as the README says"
is "$(nearest | head -1)" "quarterly-report.md|0|Quarterly report > Summary" \
   "\"How much did revenue grow over the quarter?\" finds the quarterly report's summary first"
tap_done
