package desired

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The incremental ipcache agrees with the full join: random writes to the
// four joined tables (with addresses that collide across them, so every
// precedence rule is exercised), applied through a subscription's changes
// one commit batch at a time with IPCacheAt, always give what IPCache
// computes from scratch.
func TestIPCacheAtMatchesTheJoin(t *testing.T) {
	const cluster = "cluster1"
	checkJoin(t, ipcacheJoin{cluster: cluster, node: "n1"}, ipcacheTables, 20, 60, 6,
		func(w *state.WriteTxn, rng *rand.Rand) error { return randomWrite(w, rng, cluster) })
}

// randomWrite makes one random change to the ipcache, attachments,
// endpoints or nodes, over a small address space so that they collide.
func randomWrite(w *state.WriteTxn, rng *rand.Rand, local string) error {
	// Last bytes in several chunks of a page of a host block
	// (state.ipBlock), second last bytes in several pages and groups of
	// a block, and (for IPv4) two blocks.
	lasts := []byte{0, 1, 31, 32, 33, 100, 200, 255}
	his := []byte{0, 0, 1, 17, 255}
	addr := func() netip.Addr {
		if rng.IntN(4) == 0 {
			return netip.AddrFrom16([16]byte{0xfd, 14: his[rng.IntN(len(his))], 15: lasts[rng.IntN(8)]})
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4) / 3), his[rng.IntN(len(his))], lasts[rng.IntN(8)]})
	}
	clusters := []string{local, "cluster2"}
	pods := []string{"a", "b", "c"}
	switch rng.IntN(10) {
	case 0, 1:
		a := addr()
		bits := a.BitLen()
		if rng.IntN(4) == 0 {
			bits -= 8
		}
		p, _ := a.Prefix(bits)
		return w.UpsertIP(state.IPCacheRow{Prefix: p, Cluster: clusters[rng.IntN(2)], ID: identity.NumericIdentity(1000 + rng.IntN(5)),
			HostIP: netip.AddrFrom4([4]byte{192, 168, 0, byte(rng.IntN(3))})})
	case 2:
		a := addr()
		bits := a.BitLen()
		if rng.IntN(4) == 0 {
			bits -= 8
		}
		p, _ := a.Prefix(bits)
		return w.DeleteIP(clusters[rng.IntN(2)], p)
	case 3:
		pod := pods[rng.IntN(3)]
		ips := []netip.Addr{addr()}
		if rng.IntN(2) == 0 {
			ips = append(ips, addr())
		}
		key := datapath.AttachmentKey("c-"+pod, "eth0")
		return w.UpsertAttachment(state.AttachmentRow{Key: key, ContainerID: "c-" + pod, IfName: "eth0", HostIfName: "lxc" + pod, HostIfIndex: 5,
			IPs: ips, Namespace: "default", Pod: pod})
	case 4:
		return w.DeleteAttachment(datapath.AttachmentKey("c-"+pods[rng.IntN(3)], "eth0"))
	case 5:
		pod := pods[rng.IntN(3)]
		if rng.IntN(3) == 0 {
			return w.DeleteEndpoint("default", pod)
		}
		return w.UpsertEndpoint(state.Endpoint{Namespace: "default", Name: pod, ID: identity.NumericIdentity(2000 + rng.IntN(3))})
	case 6:
		c, name := clusters[rng.IntN(2)], fmt.Sprintf("n%d", rng.IntN(3))
		n := schema.Node{Name: name, Cluster: c}
		for range rng.IntN(3) {
			n.IPAddresses = append(n.IPAddresses, schema.NodeAddress{Type: schema.AddressInternalIP, IP: net.IP(addr().AsSlice())})
		}
		return w.UpsertNode(c, n)
	case 8, 9: // a policy's CIDR identity, at prefixes the other tables claim too
		a := addr()
		bits := a.BitLen()
		if rng.IntN(2) == 0 {
			bits -= 8
		}
		p, _ := a.Prefix(bits)
		if rng.IntN(3) == 0 {
			return w.DeleteCIDRIdentity(p)
		}
		return w.UpsertCIDRIdentity(p, identity.NumericIdentity(1<<24+rng.IntN(3)))
	default:
		if rng.IntN(6) == 0 {
			return w.Drain("cluster2") // a peer gone: a host block loses some of its entries
		}
		return w.DeleteNode(clusters[rng.IntN(2)], fmt.Sprintf("n%d", rng.IntN(3)))
	}
}
