package cni

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestInstall(t *testing.T) {
	src := filepath.Join(t.TempDir(), "plugin")
	content := bytes.Repeat([]byte("binary"), 1000)
	if err := os.WriteFile(src, content, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "opt", "cni", "bin")
	for range 2 { // into a new directory, then over the installed file
		if err := Install(src, dir); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, BinaryName))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("installed file: %d bytes, %v", len(got), err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, BinaryName)); fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, want 0755", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left in %s: %v", dir, entries)
	}
	if err := Install(filepath.Join(t.TempDir(), "missing"), dir); err == nil {
		t.Fatal("Install of a missing file succeeded")
	}
}
