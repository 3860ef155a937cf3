package tunnel

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The key file is created 0600, reused as is, and refused when others can
// read it.
func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "wg.key")
	k1, err := loadOrCreateKey(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	k2, err := loadOrCreateKey(path)
	if err != nil || k2 != k1 {
		t.Fatalf("reload: %v (same key: %v)", err, k2 == k1)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKey(path); err == nil {
		t.Fatal("a world-readable key file was accepted")
	}
}

// The state file keeps every field, nil and empty pod CIDRs told apart.
func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	s, err := loadState(path)
	if err != nil || len(s.peers) != 0 {
		t.Fatalf("absent state: %v, %v", s.peers, err)
	}
	want := samplePeers()
	s.peers = want
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.peers, cmpNetip()); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
