//go:build linux

package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// podMTU leaves room for WireGuard's overhead on the underlay's 1500
// (the agent's device has 1420), as a CNI configured for a tunnel does.
const podMTU = 1380

// chain is the node's CNI network configuration list: ptp with
// host-local on the node's pod CIDRs (a range per family, so a pod of a
// dual-stack bed gets an address of each), then clustermesh-cni, run through
// libcni inside the node's namespace as the container runtime would.
type chain struct {
	n    *Node
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

func newChain(bins string, n *Node) (*chain, error) {
	ranges, routes := hostLocal(n.PodCIDRs())
	ipam, cache := filepath.Join(n.dir, "ipam"), filepath.Join(n.dir, "cni-cache")
	for _, d := range []string{ipam, cache} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"podnet","plugins":[
		{"type":"ptp","ipMasq":false,"mtu":%d,"ipam":{"type":"host-local","ranges":%s,"routes":%s,"dataDir":%q}},
		{"type":"clustermesh-cni","agentSocket":%q,"timeout":"60s"}]}`, podMTU, ranges, routes, ipam, n.Socket)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		return nil, fmt.Errorf("node %s: CNI configuration: %w", n.Name, err)
	}
	return &chain{n: n, cni: libcni.NewCNIConfigWithCacheDir([]string{bins}, cache, nil), list: list}, nil
}

// hostLocal is host-local's ranges (one range set per pod CIDR, so one
// address of each) and routes (a default route per family) as JSON.
func hostLocal(cidrs []netip.Prefix) (ranges, routes string) {
	type subnet struct {
		Subnet string `json:"subnet"`
	}
	type route struct {
		Dst string `json:"dst"`
	}
	rs, ds := [][]subnet{}, []route{}
	for _, c := range cidrs {
		rs = append(rs, []subnet{{c.String()}})
		if c.Addr().Is4() {
			ds = append(ds, route{"0.0.0.0/0"})
		} else {
			ds = append(ds, route{"::/0"})
		}
	}
	r, _ := json.Marshal(rs)
	d, _ := json.Marshal(ds)
	return string(r), string(d)
}

func (c *chain) rt(p *Pod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.containerID, NetNS: p.netns, IfName: "eth0", Args: [][2]string{
		{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name}}}
}

// add runs ADD of the whole chain and returns the pod's addresses, one per
// pod CIDR of the node in its order (IPv4, then IPv6 in a dual-stack bed).
func (c *chain) add(ctx context.Context, p *Pod) ([]netip.Addr, error) {
	var res *types100.Result
	err := netnsutil.Do(c.n.netns, func() error {
		r, err := c.cni.AddNetworkList(ctx, c.list, c.rt(p))
		if err != nil {
			return err
		}
		res, err = types100.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("CNI ADD of pod %s/%s on %s: %w", p.Namespace, p.Name, c.n.Name, err)
	}
	var out []netip.Addr
	for _, cidr := range c.n.PodCIDRs() {
		var found netip.Addr
		for _, ip := range res.IPs {
			if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && cidr.Contains(a.Unmap()) {
				found = a.Unmap()
				break
			}
		}
		if !found.IsValid() {
			b, _ := json.Marshal(res)
			return nil, fmt.Errorf("CNI ADD of pod %s/%s: no address in %v (%s) in the chain's result %s", p.Namespace, p.Name, cidr, family(cidr.Addr()), b)
		}
		out = append(out, found)
	}
	return out, nil
}
