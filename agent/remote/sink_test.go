package remote_test

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// memSink records what the agent was told, as sorted "kind cluster key" strings.
type memSink struct {
	mu     sync.Mutex
	state  map[string]string
	drains int
	log    []string
}

func newMemSink() *memSink { return &memSink{state: map[string]string{}} }

func (s *memSink) set(k, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[k] = v
	s.log = append(s.log, "upsert "+k)
}

func (s *memSink) del(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.state, k)
	s.log = append(s.log, "delete "+k)
}

func (s *memSink) UpsertNode(c string, n schema.Node) {
	s.set("node "+c+"/"+n.Name, fmt.Sprint(n.PodCIDRs()))
}
func (s *memSink) DeleteNode(c, name string) { s.del("node " + c + "/" + name) }
func (s *memSink) UpsertIdentity(c string, id identity.NumericIdentity, l identity.Labels) {
	s.set(fmt.Sprintf("identity %s/%d", c, id), l.SortedKVStoreString())
}
func (s *memSink) DeleteIdentity(c string, id identity.NumericIdentity) {
	s.del(fmt.Sprintf("identity %s/%d", c, id))
}
func (s *memSink) UpsertIP(c string, p netip.Prefix, e schema.IPEntry) {
	s.set("ip "+c+"/"+p.String(), fmt.Sprint(e.ID))
}
func (s *memSink) DeleteIP(c string, p netip.Prefix) { s.del("ip " + c + "/" + p.String()) }
func (s *memSink) UpsertService(c string, cs schema.ClusterService) {
	s.set("service "+c+"/"+cs.Namespace+"/"+cs.Name, fmt.Sprint(len(cs.Backends)))
}
func (s *memSink) DeleteService(c, ns, name string) { s.del("service " + c + "/" + ns + "/" + name) }
func (s *memSink) Drain(c string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains++
	for k := range s.state {
		if len(k) > 0 && containsCluster(k, c) {
			delete(s.state, k)
		}
	}
}

func containsCluster(k, c string) bool {
	for i := 0; i+len(c)+1 <= len(k); i++ {
		if k[i:i+len(c)+1] == c+"/" && (i == 0 || k[i-1] == ' ') {
			return true
		}
	}
	return false
}

func (s *memSink) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.state))
	for k, v := range s.state {
		out = append(out, k+" = "+v)
	}
	sort.Strings(out)
	return out
}

func (s *memSink) deletes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.log {
		if len(l) > 6 && l[:6] == "delete" {
			n++
		}
	}
	return n
}
