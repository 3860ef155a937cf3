// Package cnistore keeps the attachments the CNI plugin reported in a
// directory, one JSON file each, so that a restarted agent knows every
// pod interface of its node before it reconciles the datapath.
package cnistore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/clustermesh/clustermesh/agent/state"
)

const suffix = ".json"

// Store is a directory of attachments. Its methods are not safe for
// concurrent use on the same key.
type Store struct {
	dir string
}

// Open creates dir if needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("attachment store: no directory (--state-dir)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("attachment store %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(key string) string {
	return filepath.Join(s.dir, url.PathEscape(key)+suffix)
}

// Put writes a durably (a temporary file, fsync, rename).
func (s *Store) Put(a state.AttachmentRow) error {
	if err := a.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("store attachment %s: %w", a.Key, err)
	}
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("store attachment %s: %w", a.Key, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store attachment %s: %w", a.Key, err)
	}
	if err := os.Rename(tmp, s.path(a.Key)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store attachment %s: %w", a.Key, err)
	}
	return nil
}

// Delete removes the attachment key; absent is not an error.
func (s *Store) Delete(key string) error {
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove attachment %s: %w", key, err)
	}
	return nil
}

// Load returns every stored attachment, sorted by key. A file that does not
// hold a valid attachment is left in place (nothing is lost) and reported
// in errs; temporary files of an interrupted Put are removed.
func (s *Store) Load() (out []state.AttachmentRow, errs []error, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read attachment store %s: %w", s.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.dir, name)
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(path)
			continue
		}
		if e.IsDir() || !strings.HasSuffix(name, suffix) {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("attachment file %s: %w", path, err))
			continue
		}
		var a state.AttachmentRow
		if err := json.Unmarshal(data, &a); err != nil {
			errs = append(errs, fmt.Errorf("attachment file %s: not an attachment (remove it if its pod is gone): %w", path, err))
			continue
		}
		if err := a.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("attachment file %s: %w", path, err))
			continue
		}
		if s.path(a.Key) != path {
			errs = append(errs, fmt.Errorf("attachment file %s: holds attachment %s, expected in %s", path, a.Key, s.path(a.Key)))
			continue
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, errs, nil
}
