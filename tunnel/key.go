package tunnel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// loadOrCreateKey returns the private key in path, creating the file (0600,
// atomically: a crash leaves either no key or a whole one) if it is absent.
// A key file that others can read is refused, as ssh refuses one.
func loadOrCreateKey(path string) (wgtypes.Key, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("stat key file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return wgtypes.Key{}, fmt.Errorf("key file %s has mode %v: others can read the private key (chmod 600 %s)", path, fi.Mode().Perm(), path)
		}
		k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("key file %s: %w (remove it to generate a new key; peers then need the new public key)", path, err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return wgtypes.Key{}, fmt.Errorf("read key file: %w", err)
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generate private key: %w", err)
	}
	if err := writeFileAtomic(path, []byte(k.String()+"\n")); err != nil {
		return wgtypes.Key{}, fmt.Errorf("write key file: %w", err)
	}
	return k, nil
}

// writeFileAtomic writes data to path (mode 0600) through a temporary file
// in the same directory, synced and renamed over path.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename: ENOENT, ignored
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
