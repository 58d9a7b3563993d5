#!/bin/sh
# upgrade.sh PART... — print an upgrade script assembled from its parts, in
# the order given.  A .sql part is printed as it is.  A .list part names
# statements of the current install script (extension/install/*.sql), one
# per line by how the statement begins (e.g. "CREATE FUNCTION tvdb.job(");
# each is printed as the install has it, CREATE FUNCTION / CREATE VIEW made
# CREATE OR REPLACE.  So an object the new version changes is written once,
# in the install script, and test/upgrade checks the result.
set -eu
INSTALL=$(ls extension/install/*.sql)

# The statement that begins with $1: up to the first line that ends in ";"
# outside a $$ body.
statement() {
    awk -v head="$1" '
        !found && index($0, head) == 1 { found = 1; quotes = 0 }
        found {
            print
            quotes += gsub(/\$\$/, "&")
            if (quotes % 2 == 0 && $0 ~ /;[ \t]*$/) exit
        }' $INSTALL
}

for part in "$@"; do
    case "$part" in
    *.sql) cat "$part" ;;
    *.list)
        echo "-- $(basename "$part"): statements of the install script, as it has them"
        grep -v '^[[:space:]]*\(#\|$\)' "$part" | while IFS= read -r head; do
            n=$(cat $INSTALL | awk -v head="$head" 'index($0, head) == 1' | wc -l)
            if [ "$n" -ne 1 ]; then
                echo "$part: \"$head\" begins $n statements of extension/install, not one" >&2
                exit 1
            fi
            statement "$head" | sed '1s/^CREATE FUNCTION /CREATE OR REPLACE FUNCTION /; 1s/^CREATE VIEW /CREATE OR REPLACE VIEW /'
        done
        ;;
    *) echo "upgrade.sh: $part is neither .sql nor .list" >&2; exit 1 ;;
    esac
done
