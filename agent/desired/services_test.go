package desired

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

// The incremental services agree with the full join: random writes to
// local Services (frontends shared between Services, so that precedence
// matters), peers' exports and peers' nodes (which decide which backends a
// peer may announce), applied through a subscription's changes with
// ServicesAt, always give what Services computes from scratch.
func TestServicesAtMatchesTheJoin(t *testing.T) {
	checkJoin(t, servicesJoin{cluster: "cluster1"}, servicesTables, 30, 80, 4, randomServiceWrite)
}

// The incremental routing peers agree with the full join: random node
// writes of this cluster (this node among them) and of peers, with and
// without addresses.
func TestPeerAtMatchesTheJoin(t *testing.T) {
	checkJoin(t, peersJoin{cluster: "cluster1", node: "n0"}, []string{state.TableNodes}, 10, 60, 3, func(w *state.WriteTxn, rng *rand.Rand) error {
		c := []string{"cluster1", "cluster2"}[rng.IntN(2)]
		name := fmt.Sprint("n", rng.IntN(3))
		if rng.IntN(4) == 0 {
			return w.DeleteNode(c, name)
		}
		n := schema.Node{Name: name, Cluster: c, WireguardPubKey: fmt.Sprint("key", rng.IntN(2))}
		if rng.IntN(3) > 0 {
			n.IPAddresses = []schema.NodeAddress{{Type: schema.AddressInternalIP, IP: net.IP{192, 168, byte(rng.IntN(2)), 1}}}
		}
		return w.UpsertNode(c, n)
	})
}

// randomServiceWrite makes one random change to the local Services, the
// peers' exports or the peers' nodes, over a few names and addresses so
// that they collide.
func randomServiceWrite(w *state.WriteTxn, rng *rand.Rand) error {
	names := []string{"a", "b", "c"}
	peers := []string{"cluster2", "cluster3"}
	frontends := []string{"10.96.0.1", "10.96.0.2", "fd00::10"}
	// Backends: in cluster2's pod CIDR, in cluster3's, or nobody's.
	backends := []string{"10.2.0.5", "10.2.0.6", "10.3.0.5", "10.9.9.9"}
	switch rng.IntN(7) {
	case 0, 1:
		ls := state.LocalService{Namespace: "default", Name: names[rng.IntN(3)],
			Annotations: services.Annotations{Global: rng.IntN(3) > 0}}
		if ls.Annotations.Global && rng.IntN(2) == 0 {
			ls.Annotations.Affinity = services.AffinityLocal
		}
		for range rng.IntN(3) {
			ls.Frontends = append(ls.Frontends, services.Frontend{Addr: netip.MustParseAddr(frontends[rng.IntN(3)]),
				Port: uint16(80 + rng.IntN(2)), Protocol: []string{"TCP", "UDP"}[rng.IntN(2)], Name: "http"})
		}
		for range rng.IntN(3) {
			ls.Backends = append(ls.Backends, services.Backend{Addr: netip.AddrFrom4([4]byte{10, 1, 0, byte(1 + rng.IntN(4))}),
				Cluster: "cluster1", Ready: rng.IntN(4) > 0,
				Ports: map[string]schema.L4Addr{"http": {Protocol: schema.ProtocolTCP, Port: 8080}}})
		}
		return w.UpsertLocalService(ls)
	case 2:
		return w.DeleteLocalService("default", names[rng.IntN(3)])
	case 3:
		peer := peers[rng.IntN(2)]
		cs := schema.ClusterService{Cluster: peer, Namespace: "default", Name: names[rng.IntN(3)], Shared: true,
			Backends: map[string]schema.PortConfiguration{}}
		for range rng.IntN(3) {
			cs.Backends[backends[rng.IntN(4)]] = schema.PortConfiguration{"http": {Protocol: schema.ProtocolTCP, Port: uint16(8080 + rng.IntN(2))}}
		}
		return w.UpsertService(peer, cs)
	case 4:
		return w.DeleteService(peers[rng.IntN(2)], "default", names[rng.IntN(3)])
	case 5:
		peer := peers[rng.IntN(2)]
		n := schema.Node{Name: fmt.Sprint("n", rng.IntN(2)), Cluster: peer}
		if rng.IntN(3) > 0 {
			// Sometimes the other peer's CIDR: a node's CIDR decides whose backends are whose.
			octet := byte(2 + rng.IntN(2))
			n.IPv4AllocCIDR = schema.NewCIDR(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, octet, 0, 0}), 16))
		}
		return w.UpsertNode(peer, n)
	default:
		return w.DeleteNode(peers[rng.IntN(2)], fmt.Sprint("n", rng.IntN(2)))
	}
}
