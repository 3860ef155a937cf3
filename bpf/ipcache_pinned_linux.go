package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// PinnedIPCache is the ipcache map a datapath pinned under pinDir, opened
// read-only by another process (tests, tools) without loading programs.
type PinnedIPCache struct {
	IPCache
}

// OpenPinnedIPCache opens the ipcache pinned under pinDir (the agent's
// --bpf-pin-dir). Close it when done.
func OpenPinnedIPCache(pinDir string) (*PinnedIPCache, error) {
	path := filepath.Join(pinDir, tcMapIpcache)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open the pinned ipcache %s (is an agent running with --bpf-pin-dir=%s?): %w", path, pinDir, err)
	}
	return &PinnedIPCache{IPCache{m: m}}, nil
}

// Lookup returns the entry the datapath would find for p: the longest
// prefix of the map that contains it (an LPM trie lookup).
func (c *PinnedIPCache) Lookup(p netip.Prefix) (IPCacheValue, bool, error) {
	k, p, err := ipcacheKeyOf(p)
	if err != nil {
		return IPCacheValue{}, false, fmt.Errorf("ipcache lookup: %w", err)
	}
	var v rawIPCacheValue
	if err := c.m.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return IPCacheValue{}, false, nil
		}
		return IPCacheValue{}, false, fmt.Errorf("ipcache lookup %v: %w", p, err)
	}
	return v.value(), true, nil
}

// Close closes the map (the pin stays).
func (c *PinnedIPCache) Close() error { return c.m.Close() }
