package bpf

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/clustermesh/clustermesh/internal/version"
)

// TestObjectsHash: the hash the binaries report is the one of the
// committed objects, computed as the Makefile does (the files
// concatenated, tc then sock), and every binary linking this package
// reports it in its version.
func TestObjectsHash(t *testing.T) {
	h := sha256.New()
	for _, f := range []string{"tc_bpfel.o", "sock_bpfel.o"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	want := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if got := ObjectsHash(); got != want {
		t.Errorf("ObjectsHash() = %s, want %s (the committed objects)", got, want)
	}
	if got := version.Get().BPFObjects; got != want {
		t.Errorf("version.Get().BPFObjects = %q, want %s", got, want)
	}
}
