package policywatch

import "hash/fnv"

// idAllocator gives each endpoint a datapath ID (1..65535) derived from
// its key, so that it is the same after an agent restart unless two keys
// collide (then the next free one is taken).
type idAllocator struct {
	byKey map[string]uint16
	used  map[uint16]string
}

func newIDAllocator() *idAllocator {
	return &idAllocator{byKey: map[string]uint16{}, used: map[uint16]string{}}
}

func (a *idAllocator) get(key string) uint16 {
	if id, ok := a.byKey[key]; ok {
		return id
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	id := uint16(h.Sum32()%65535) + 1
	for range 65535 {
		if _, taken := a.used[id]; !taken {
			break
		}
		id = id%65535 + 1
	}
	a.byKey[key], a.used[id] = id, key
	return id
}

func (a *idAllocator) release(key string) {
	if id, ok := a.byKey[key]; ok {
		delete(a.byKey, key)
		delete(a.used, id)
	}
}
