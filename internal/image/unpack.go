package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Unpack writes the image's file system (its layers flattened) into dir,
// as a container runtime would: a root file system for runc. It handles
// directories, regular files, symlinks and hard links, and refuses any
// entry whose path or link target leaves dir.
func Unpack(img v1.Image, dir string) (err error) {
	rc := mutate.Extract(img)
	defer func() {
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
	}()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// The flattening writes the archive's end before it reports
			// a failure (an unsafe path): read on to get it.
			if _, err := io.Copy(io.Discard, rc); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		target, err := within(dir, h.Name)
		if err != nil {
			return err
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(target, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, cerr := io.Copy(f, tr)
			if err := errors.Join(cerr, f.Close()); err != nil {
				return fmt.Errorf("unpack %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			link := h.Linkname
			if !filepath.IsAbs(link) {
				link = filepath.Join(filepath.Dir("/"+h.Name), link)
			}
			if _, err := within(dir, link); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src, err := within(dir, h.Linkname)
			if err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unpack %s: unsupported tar entry type %q", h.Name, h.Typeflag)
		}
	}
}

// within is name under dir, or an error when it would leave dir.
func within(dir, name string) (string, error) {
	for part := range strings.SplitSeq(filepath.ToSlash(name), "/") {
		if part == ".." {
			return "", fmt.Errorf("unpack: entry %q leaves the root file system", name)
		}
	}
	return filepath.Join(dir, filepath.Clean("/"+name)), nil
}
