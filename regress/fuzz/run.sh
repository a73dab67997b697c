#!/bin/sh
# make fuzz: builds each libFuzzer target with clang, AddressSanitizer
# and UBSan, and runs it for FUZZ_SECONDS (default 60) from its seeds.
cd "$(dirname "$0")/../.." || exit 1
SECONDS_EACH=${FUZZ_SECONDS:-60}
PKGS="libevent libtls libnghttp2 expat libunbound libbsd-overlay libcrypto"
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Icompat \
    $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -ldb-5.3 -lm"
out=regress/fuzz/out
mkdir -p "$out"
rc=0
for t in apns_reason:"apnsmsg.c" xml_stream:"xml.c"; do
	name=${t%%:*}
	srcs=${t#*:}
	echo "=== $name"
	clang $CFLAGS -o "$out/$name" "regress/fuzz/$name.c" $srcs log.c \
	    imsg.c $LIBS || { rc=1; continue; }
	mkdir -p "$out/$name.corpus"
	cp regress/fuzz/seeds/$name.* "$out/$name.corpus/" 2>/dev/null
	"$out/$name" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
	    "$out/$name.corpus" 2>&1 | tail -5 || rc=1
done
exit $rc
