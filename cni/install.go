package cni

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BinaryName is the plugin's file name, the "type" of its conflist entry.
const BinaryName = "clustermesh-cni"

// Install copies the plugin binary src into dir (the container runtime's
// CNI bin directory) atomically: a runtime never executes a partial file.
func Install(src, dir string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install %s: %w", BinaryName, err)
	}
	defer in.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install %s into %s: %w", BinaryName, dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+BinaryName+"-*")
	if err != nil {
		return fmt.Errorf("install %s into %s: %w", BinaryName, dir, err)
	}
	_, cerr := io.Copy(tmp, in)
	err = errors.Join(cerr, tmp.Chmod(0o755), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, BinaryName))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("install %s into %s: %w", BinaryName, dir, err)
	}
	return nil
}
