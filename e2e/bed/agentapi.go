//go:build linux

package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// AgentGet reads path of the node's agent API (docs/agent-api.md) into
// into.
func (n *Node) AgentGet(ctx context.Context, path string, into any) error {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", n.Socket)
	}, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("agent of %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent of %s: GET %s: %s", n.Name, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// IPCachePrefixes returns the prefixes of the agent's ipcache with the
// cluster each comes from.
func (n *Node) IPCachePrefixes(ctx context.Context) (map[string]string, error) {
	var entries []struct{ Prefix, Cluster string }
	if err := n.AgentGet(ctx, "/v1/ipcache", &entries); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		out[e.Prefix] = e.Cluster
	}
	return out, nil
}

// Drop is a drop the node's agent recorded (GET /v1/drops).
type Drop struct {
	Time                     time.Time
	Direction, Reason        string
	Src, Dst                 string
	Protocol                 uint8
	SrcIdentity, DstIdentity uint32
	SrcCluster, DstCluster   string
}

func (d Drop) String() string {
	return fmt.Sprintf("%s %s -> %s proto %d, identity %d (%s) -> %d (%s): %s",
		d.Direction, d.Src, d.Dst, d.Protocol, d.SrcIdentity, d.SrcCluster, d.DstIdentity, d.DstCluster, d.Reason)
}

// Drops returns the drops the node's agent recorded.
func (n *Node) Drops(ctx context.Context) ([]Drop, error) {
	var resp struct{ Drops []Drop }
	if err := n.AgentGet(ctx, "/v1/drops", &resp); err != nil {
		return nil, err
	}
	return resp.Drops, nil
}

// FindDrop waits until the node's agent has recorded a drop of a packet
// from src (an IP of either family) to dst (ip:port, [ip6]:port) and
// returns it.
func (n *Node) FindDrop(ctx context.Context, src, dst string) (Drop, error) {
	var found Drop
	err := n.c.b.waitUntil(ctx, 10*time.Second, "the drop "+src+" -> "+dst+" recorded by the agent of "+n.Name, func(ctx context.Context) (bool, string) {
		drops, err := n.Drops(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, d := range drops {
			if sameDrop(d, src, dst) {
				found = d
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d drops recorded", len(drops))
	}, n.agent)
	return found, err
}

// sameDrop reports whether d is of a packet from the IP src to the ip:port
// dst, whatever the spelling of the addresses (IPv6 zeros, brackets).
func sameDrop(d Drop, src, dst string) bool {
	ds, err1 := netip.ParseAddrPort(d.Src)
	dd, err2 := netip.ParseAddrPort(d.Dst)
	s, err3 := netip.ParseAddr(src)
	t, err4 := netip.ParseAddrPort(dst)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return strings.HasPrefix(d.Src, src+":") && d.Dst == dst
	}
	return ds.Addr().Unmap() == s.Unmap() && dd.Addr().Unmap() == t.Addr().Unmap() && dd.Port() == t.Port()
}

// Identity returns the identity the node's agent has for ip (of either
// family: its /32 or /128 entry).
func (n *Node) Identity(ctx context.Context, ip string) (uint32, error) {
	var entries []struct {
		Prefix   string
		Identity uint32
	}
	if err := n.AgentGet(ctx, "/v1/ipcache", &entries); err != nil {
		return 0, err
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return 0, fmt.Errorf("identity of %q: %w", ip, err)
	}
	for _, e := range entries {
		if p, err := netip.ParsePrefix(e.Prefix); err == nil && p == prefixOf(a) {
			return e.Identity, nil
		}
	}
	return 0, fmt.Errorf("agent of %s: no ipcache entry for %s", n.Name, ip)
}
