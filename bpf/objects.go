//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package bpf

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/clustermesh/clustermesh/internal/version"
)

func init() { version.RegisterBPFObjects(ObjectsHash) }

// ObjectsHash identifies the BPF objects this binary embeds: "sha256:"
// and the SHA-256 of tc_bpfel.o followed by sock_bpfel.o, as make
// computes it for the binaries' --version (cat bpf/tc_bpfel.o
// bpf/sock_bpfel.o | sha256sum).
func ObjectsHash() string {
	h := sha256.New()
	h.Write(_TcBytes)
	h.Write(_SockBytes)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
