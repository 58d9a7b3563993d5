#!/bin/sh
# Builds and runs the chunker tests (TAP), then again under valgrind if it
# is installed.  Exits non-zero on any failure.
set -eu
cd "$(dirname "$0")"
make -s all
./test_chunker
if command -v valgrind >/dev/null 2>&1; then
	echo "# valgrind (FUZZ_ITERS=${VALGRIND_FUZZ_ITERS:-100})"
	FUZZ_ITERS="${VALGRIND_FUZZ_ITERS:-100}" valgrind -q --error-exitcode=1 \
		--leak-check=full --errors-for-leak-kinds=definite,indirect \
		./test_chunker >/dev/null
	echo "# valgrind: no errors, no leaks"
fi
