package bpf

// The BPF objects are compiled by bpf2go (pinned in go.mod's tool block) and
// committed; check-generated.sh fails when regenerating changes them. Run
// hack/bpf-deps.sh first for clang, llvm-strip and the kernel/libbpf headers.
//
//go:generate go tool bpf2go -target bpfel -cflags "-mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -output-stem tc tc c/tc.c
//go:generate go tool bpf2go -target bpfel -cflags "-mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -output-stem sock sock c/sock.c
