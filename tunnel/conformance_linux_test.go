package tunnel_test

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
	"github.com/clustermesh/clustermesh/tunnel"
)

// The Peers table passes the datapath conformance suite, restarts included
// (close the device, open it again over the same key and state files in the
// same namespace). The suite's sample keys ("key-of-cluster-2-node-1") are
// not WireGuard keys, which Update refuses: an adapter maps each to a valid
// key derived from it and back. The other tables are the in-memory ones.
func TestConformance(t *testing.T) {
	requireRoot(t)
	dptest.Run(t, dptest.Impl{
		NewKernel: func(t *testing.T) func(*testing.T) datapath.Datapath {
			p := uniq(t)
			ns := newNS(t, p)
			cfg := tunnel.Config{Name: p + "wg", KeyFile: filepath.Join(t.TempDir(), "wg.key"), NetNSPath: ns}
			mem := datapath.NewMemory()
			keys := &sampleKeys{back: map[string]string{}}
			return func(t *testing.T) datapath.Datapath {
				d, err := tunnel.New(t.Context(), cfg)
				if err != nil {
					t.Fatalf("tunnel.New: %v", err)
				}
				t.Cleanup(func() { _ = d.Close() })
				return conformanceDP{Memory: mem, dev: d, keys: keys}
			}
		},
	})
}

type conformanceDP struct {
	*datapath.Memory
	dev  *tunnel.Device
	keys *sampleKeys
}

func (c conformanceDP) Peers() datapath.Table[string, datapath.Peer] {
	return mappedPeers{Table: c.dev.Peers(), keys: c.keys}
}

func (c conformanceDP) Close() error { return c.dev.Close() }

// sampleKeys maps the suite's sample keys to WireGuard keys and back; it
// outlives a restart, as the suite's own values do.
type sampleKeys struct {
	mu   sync.Mutex // guards back
	back map[string]string
}

func (s *sampleKeys) to(k string) string {
	if _, err := wgtypes.ParseKey(k); err == nil {
		return k
	}
	v := wgtypes.Key(sha256.Sum256([]byte(k))).String()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.back[v] = k
	return v
}

func (s *sampleKeys) from(v string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.back[v]; ok {
		return k
	}
	return v
}

type mappedPeers struct {
	datapath.Table[string, datapath.Peer]
	keys *sampleKeys
}

func (m mappedPeers) Update(ctx context.Context, key string, p datapath.Peer) error {
	p.WireguardPubKey = m.keys.to(p.WireguardPubKey)
	return m.Table.Update(ctx, key, p)
}

func (m mappedPeers) List(ctx context.Context) (map[string]datapath.Peer, error) {
	out, err := m.Table.List(ctx)
	for k, p := range out {
		p.WireguardPubKey = m.keys.from(p.WireguardPubKey)
		out[k] = p
	}
	return out, err
}
