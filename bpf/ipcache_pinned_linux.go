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
	var maps [2]*ebpf.Map
	for i, name := range []string{tcMapIpcache, tcMapIpcacheHosts} {
		path := filepath.Join(pinDir, name)
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			if maps[0] != nil {
				_ = maps[0].Close()
			}
			return nil, fmt.Errorf("open the pinned ipcache %s (is an agent running with --bpf-pin-dir=%s?): %w", path, pinDir, err)
		}
		maps[i] = m
	}
	return &PinnedIPCache{IPCache{m: maps[0], hosts: maps[1]}}, nil
}

// Lookup returns the entry the datapath would find for p: the longest
// prefix of the ipcache that contains it (a single address in the hosts
// map, else an LPM trie lookup).
func (c *PinnedIPCache) Lookup(p netip.Prefix) (IPCacheValue, bool, error) {
	k, p, err := ipcacheKeyOf(p)
	if err != nil {
		return IPCacheValue{}, false, fmt.Errorf("ipcache lookup: %w", err)
	}
	var v rawIPCacheValue
	if p.Bits() == p.Addr().BitLen() {
		if err := c.hosts.Lookup(&k, &v); err == nil {
			return v.value(), true, nil
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return IPCacheValue{}, false, fmt.Errorf("ipcache lookup %v: %w", p, err)
		}
	}
	if err := c.m.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return IPCacheValue{}, false, nil
		}
		return IPCacheValue{}, false, fmt.Errorf("ipcache lookup %v: %w", p, err)
	}
	return v.value(), true, nil
}

// Close closes the maps (the pins stay).
func (c *PinnedIPCache) Close() error { return errors.Join(c.m.Close(), c.hosts.Close()) }
