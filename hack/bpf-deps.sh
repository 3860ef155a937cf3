#!/usr/bin/env bash
# Installs what building and testing bpf/ needs, only when it is missing:
# clang + llvm-strip (bpf2go), libbpf-dev (bpf_helpers.h, bpf_endian.h),
# linux-libc-dev (linux/bpf.h etc.), iproute2 (ip), iptables (benchmark),
# bpftool (debugging). Debian packages, --no-install-recommends.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }

# bpf2go runs "clang" and "llvm-strip"; Debian's clang-14 ships versioned
# binaries, the unversioned "clang" and "llvm" packages add the plain names.
have clang || need+=(clang)
have llvm-strip || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
# asm/types.h for the BPF target comes from the multiarch include dir.
[ -e /usr/include/x86_64-linux-gnu/asm/types.h ] || need+=(linux-libc-dev)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have bpftool || need+=(bpftool)

if [ ${#need[@]} -eq 0 ]; then
	echo "bpf-deps: everything present"
	exit 0
fi

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "bpf-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2068 # word splitting is wanted, names have no spaces
$SUDO apt-get install -y --no-install-recommends ${need[@]}
