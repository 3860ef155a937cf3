package bpfdp

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
)

// maxClusterName is the longest cluster name the cluster table holds (the
// project allows 32 bytes: identity.MaxClusterNameLength; the slack keeps
// the pinned layout if that grows).
const maxClusterName = 64

// clusterName is one slot of the cluster table; all zero is a free slot.
type clusterName [maxClusterName]byte

// clusterTable numbers cluster names for the ipcache: an entry's Flags byte
// is the index of its cluster's name in a pinned array (0 is the local
// cluster, ""), so the ipcache entry itself says where it comes from and
// survives a restart with it. Indices are allocated on first use and
// reclaimed, when all 255 are taken, from names no entry uses any more.
type clusterTable struct {
	m *ebpf.Map

	mu      sync.Mutex // guards byName and byIndex
	byName  map[string]uint8
	byIndex [256]string
}

func clustersSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       "cm_clusters",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  maxClusterName,
		MaxEntries: 256,
		Pinning:    ebpf.PinByName,
	}
}

func newClusterTable(m *ebpf.Map) (*clusterTable, error) {
	c := &clusterTable{m: m, byName: map[string]uint8{"": 0}}
	var (
		k uint32
		v clusterName
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if k == 0 || v == (clusterName{}) {
			continue
		}
		name := string(v[:clen(v[:])])
		c.byIndex[k] = name
		c.byName[name] = uint8(k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read cluster table: %w", err)
	}
	return c, nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// name returns the name of index i, and false for an index not allocated.
func (c *clusterTable) name(i uint8) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i == 0 {
		return "", true
	}
	return c.byIndex[i], c.byIndex[i] != ""
}

// index returns the index of name, allocating one if needed. inUse lists
// the indices the ipcache holds; it is called only when every index is
// taken, to free the others.
func (c *clusterTable) index(name string, inUse func() (map[uint8]bool, error)) (uint8, error) {
	if len(name) > maxClusterName {
		return 0, fmt.Errorf("cluster name %q is longer than %d bytes", name, maxClusterName)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return 0, fmt.Errorf("cluster name %q contains a NUL byte", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.byName[name]; ok {
		return i, nil
	}
	free := c.free()
	if free == 0 {
		used, err := inUse()
		if err != nil {
			return 0, fmt.Errorf("reclaim cluster indices: %w", err)
		}
		for i := 1; i < len(c.byIndex); i++ {
			if n := c.byIndex[i]; n != "" && !used[uint8(i)] {
				delete(c.byName, n)
				c.byIndex[i] = ""
			}
		}
		if free = c.free(); free == 0 {
			return 0, fmt.Errorf("cluster %q: all 255 cluster indices are in use", name)
		}
	}
	var v clusterName
	copy(v[:], name)
	if err := c.m.Update(uint32(free), &v, ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("write cluster table: %w", err)
	}
	c.byIndex[free], c.byName[name] = name, free
	return free, nil
}

func (c *clusterTable) free() uint8 {
	for i := 1; i < len(c.byIndex); i++ {
		if c.byIndex[i] == "" {
			return uint8(i)
		}
	}
	return 0
}
