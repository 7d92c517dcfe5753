#!/usr/bin/env bash
# The module map's rules (docs/design.md, "Module map"), checked on the
# includes themselves: each folder of lib/ includes only the folders below
# it, gRPC headers appear only in lib/net/, and the checker in
# tools/lincheck/ includes nothing of ours.
#
# Usage: layering.sh [ROOT]        check the tree at ROOT (default: this repo)
#        layering.sh --self-test   also prove that a broken copy fails
set -u
here=$(cd "$(dirname "$0")/.." && pwd)

# folder -> the folders its files may include (itself included)
declare -A allowed=(
  [lib/base]="base"
  [lib/protocol]="base protocol"
  [lib/storage]="base protocol storage"
  [lib/net]="base protocol net"
  [lib/node]="base protocol storage net node"
  [lib/sim]="base protocol node sim"
)

check() {
    local root=$1 bad=0 f inc dir top ok a
    for dir in "${!allowed[@]}"; do
        [ -d "$root/$dir" ] || { echo "missing folder $dir"; bad=1; continue; }
        for f in "$root/$dir"/*.[ch]; do
            [ -e "$f" ] || continue
            while IFS= read -r inc; do
                case $inc in
                dht.pb-c.h) [ "$dir" = lib/net ] && continue ;; # generated into the build
                esac
                case $inc in
                */*) top=${inc%%/*} ;;
                *) echo "${f#$root/}: #include \"$inc\" is not written from lib/"; bad=1; continue ;;
                esac
                ok=0
                for a in ${allowed[$dir]}; do [ "$top" = "$a" ] && ok=1; done
                if [ $ok = 0 ]; then
                    echo "${f#$root/}: $dir may not include \"$inc\" (allowed: ${allowed[$dir]})"
                    bad=1
                fi
            done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
            if [ "$dir" != lib/net ] && grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<grpc' "$f"; then
                echo "${f#$root/}: gRPC headers belong to lib/net only"
                bad=1
            fi
        done
    done
    # Nothing outside lib/net includes gRPC, and the checker is self-contained.
    while IFS= read -r f; do
        case $f in lib/net/*) ;; *) echo "$f: gRPC headers belong to lib/net only"; bad=1 ;; esac
    done < <(cd "$root" && grep -rlE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<grpc' \
                 --include='*.[ch]' lib client server tools tests 2>/dev/null)
    for f in "$root"/tools/lincheck/*.[ch]; do
        [ -e "$f" ] || continue
        while IFS= read -r inc; do
            [ "$inc" = lincheck.h ] || { echo "${f#$root/}: the checker includes \"$inc\""; bad=1; }
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
    done
    return $bad
}

if [ "${1:-}" = --self-test ]; then
    check "$here" || { echo "FAIL: the tree breaks the module map"; exit 1; }
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/dht-layering.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    for broken in 'lib/protocol/replica.c:#include "storage/wal.h"' \
                  'lib/storage/durable.c:#include <grpc/grpc.h>' \
                  'lib/base/util.c:#include "protocol/transport.h"' \
                  'tools/lincheck/lincheck.c:#include "base/util.h"' \
                  'lib/node/node.c:#include "replica.h"'; do
        rm -rf "$tmp/t" && mkdir -p "$tmp/t" && cp -r "$here/lib" "$here/tools" "$tmp/t/"
        echo "${broken#*:}" >>"$tmp/t/${broken%%:*}"
        if check "$tmp/t" >/dev/null; then
            echo "FAIL: a copy with '${broken#*:}' in ${broken%%:*} passed"
            exit 1
        fi
    done
    echo "module map holds; 5 broken copies refused"
    exit 0
fi
check "${1:-$here}" && echo "module map holds"
