#!/usr/bin/env bash
# Regenerates the bpf2go output (*_bpfel.go, *_bpfel.o) of this package into
# a temporary copy and fails if it differs from what is committed. Needs the
# toolchain from hack/bpf-deps.sh (clang, llvm-strip, libbpf and kernel
# headers). Run from anywhere: bpf/check-generated.sh
set -euo pipefail

pkg="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$pkg/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The bpf2go pinned in go.mod's tool block.
(cd "$root" && go build -o "$tmp/bin/bpf2go" github.com/cilium/ebpf/cmd/bpf2go)

mkdir -p "$tmp/bpf"
cp -r "$pkg/c" "$pkg/gen.go" "$tmp/bpf/"
cd "$tmp/bpf"
grep -h '^//go:generate go tool bpf2go ' "$pkg"/*.go | sed 's|^//go:generate go tool bpf2go ||' |
	while IFS= read -r args; do
		eval "GOPACKAGE=bpf GOFILE=gen.go \"$tmp/bin/bpf2go\" $args" >/dev/null
	done

status=0
for f in "$pkg"/*_bpfel.go "$pkg"/*_bpfel.o; do
	name="$(basename "$f")"
	if ! cmp -s "$f" "$tmp/bpf/$name"; then
		echo "check-generated: $name differs from a fresh go generate ./bpf" >&2
		status=1
	fi
done
for f in "$tmp"/bpf/*_bpfel.go "$tmp"/bpf/*_bpfel.o; do
	[ -e "$pkg/$(basename "$f")" ] || { echo "check-generated: $(basename "$f") is not committed" >&2; status=1; }
done
if [ "$status" -ne 0 ]; then
	echo "check-generated: run 'go generate ./bpf' (after hack/bpf-deps.sh) and commit the result" >&2
	exit 1
fi
echo "check-generated: generated files are up to date"
