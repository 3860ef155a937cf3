package tunnel

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// A peer of either family: IPv6 node IPs and pod CIDRs are checked like
// IPv4 ones (the same refusals, the same messages), the AllowedIPs hold
// the node IP as a /32 or /128, and a pod CIDR's route takes the device's
// source address of its own family (a link-scope route for IPv4 only: an
// IPv6 route has universe scope).
func TestPeerFamilies(t *testing.T) {
	const key = "ZGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciB0ZXN0cyE="
	for _, f := range []struct {
		name                         string
		nodeIP, cidr, other, mapped  string
		hostPrefix, src, unmasked    string
		wantScope                    netlink.Scope
		zoned                        string
		overlapping, overlappingWith string
	}{
		{name: "IPv4", nodeIP: "192.168.2.10", cidr: "10.2.1.0/24", other: "10.2.2.0/24", mapped: "::ffff:192.168.2.10",
			hostPrefix: "192.168.2.10/32", src: "10.1.1.1", unmasked: "10.2.1.1/24", wantScope: netlink.SCOPE_LINK,
			overlapping: "10.2.1.128/25"},
		{name: "IPv6", nodeIP: "2001:db8:2::10", cidr: "fd00:2:0:1::/64", other: "fd00:2:0:2::/64", mapped: "::ffff:192.168.2.10",
			hostPrefix: "2001:db8:2::10/128", src: "fd00:1:0:1::1", unmasked: "fd00:2:0:1::1/64", wantScope: netlink.SCOPE_UNIVERSE,
			zoned: "fe80::1%eth0", overlapping: "fd00:2:0:1:8000::/65"},
	} {
		t.Run(f.name, func(t *testing.T) {
			p := datapath.Peer{Cluster: "c2", Node: "n1", NodeIP: netip.MustParseAddr(f.nodeIP),
				PodCIDRs: []netip.Prefix{netip.MustParsePrefix(f.cidr), netip.MustParsePrefix(f.other)}, WireguardPubKey: key}
			if _, err := validatePeer("c2/n1", p); err != nil {
				t.Fatalf("validatePeer: %v", err)
			}
			if got := hostPrefix(p.NodeIP).String(); got != f.hostPrefix {
				t.Errorf("AllowedIP of the node %s, want %s", got, f.hostPrefix)
			}
			refuse := func(what string, q datapath.Peer, want string) {
				t.Helper()
				_, err := validatePeer("c2/n1", q)
				if !errors.Is(err, ErrInvalidPeer) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v, want ErrInvalidPeer naming %q", what, err, want)
				}
			}
			q := p
			q.NodeIP = netip.MustParseAddr(f.mapped)
			refuse("IPv4-mapped node IP", q, `node IP "`+f.mapped+`" is not a usable endpoint`)
			q = p
			q.PodCIDRs = []netip.Prefix{netip.MustParsePrefix(f.unmasked)}
			refuse("unmasked pod CIDR", q, "pod CIDR "+f.unmasked+" is not a masked prefix")
			q = p
			q.PodCIDRs = []netip.Prefix{netip.MustParsePrefix(f.cidr), netip.MustParsePrefix(f.overlapping)}
			refuse("overlapping pod CIDRs", q, "pod CIDRs "+f.cidr+" and "+f.overlapping+" overlap")
			q = p
			q.PodCIDRs = []netip.Prefix{netip.MustParsePrefix(f.hostPrefix)}
			refuse("pod CIDR the node IP", q, "pod CIDR "+f.hostPrefix+" is the node IP")
			if f.zoned != "" {
				q = p
				q.NodeIP = netip.MustParseAddr(f.zoned)
				refuse("zoned node IP", q, "is not a usable endpoint")
			}

			// The endpoint wgctrl is given: [addr]:port for IPv6.
			ep := &net.UDPAddr{IP: p.NodeIP.AsSlice(), Port: DefaultListenPort}
			if want := netip.AddrPortFrom(p.NodeIP, DefaultListenPort).String(); ep.String() != want {
				t.Errorf("endpoint %s, want %s", ep, want)
			}
			if back, ok := prefixOf(*ipNet(netip.MustParsePrefix(f.cidr))); !ok || back.String() != f.cidr {
				t.Errorf("prefixOf(ipNet(%s)) = %v, %v", f.cidr, back, ok)
			}

			d := &Device{ifindex: 7, cfg: Config{Addresses: []netip.Prefix{
				netip.MustParsePrefix("10.1.1.1/32"), netip.MustParsePrefix("fd00:1:0:1::1/128"),
			}}}
			r := d.route(netip.MustParsePrefix(f.cidr))
			if r.LinkIndex != 7 || r.Dst.String() != f.cidr || r.Scope != f.wantScope || r.Src.String() != f.src {
				t.Errorf("route %+v: want dev 7 dst %s scope %v src %s", r, f.cidr, f.wantScope, f.src)
			}
			if r := (&Device{ifindex: 7}).route(netip.MustParsePrefix(f.cidr)); r.Src != nil {
				t.Errorf("route without a device address of the family: src %v", r.Src)
			}
		})
	}
}

// An IPv4-mapped AllowedIP read back from the device is the IPv4 prefix it
// maps; IPv6 prefixes come back as they are.
func TestPrefixOfFamilies(t *testing.T) {
	for in, want := range map[string]string{
		"10.2.1.0/24":          "10.2.1.0/24",
		"fd00:2:0:1::/64":      "fd00:2:0:1::/64",
		"2001:db8:2::10/128":   "2001:db8:2::10/128",
		"::ffff:10.2.1.0/120":  "10.2.1.0/24",
		"::ffff:192.0.2.1/128": "192.0.2.1/32",
	} {
		_, n, err := net.ParseCIDR(in)
		if err != nil {
			t.Fatal(err)
		}
		if p := netip.MustParsePrefix(in); p.Addr().Is4In6() {
			// net.ParseCIDR gives a 4-byte IP: build the 16-byte form a
			// device may report.
			n = &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}
		}
		if got, ok := prefixOf(*n); !ok || got.String() != want {
			t.Errorf("prefixOf(%s) = %v, %v; want %s", in, got, ok, want)
		}
	}
}
