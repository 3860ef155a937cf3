//go:build linux

package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
// from src to dst (ip:port) and returns it.
func (n *Node) FindDrop(ctx context.Context, src, dst string) (Drop, error) {
	var found Drop
	err := n.c.b.waitUntil(ctx, 10*time.Second, "the drop "+src+" -> "+dst+" recorded by the agent of "+n.Name, func(ctx context.Context) (bool, string) {
		drops, err := n.Drops(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, d := range drops {
			if strings.HasPrefix(d.Src, src+":") && d.Dst == dst {
				found = d
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d drops recorded", len(drops))
	}, n.agent)
	return found, err
}

// Identity returns the identity the node's agent has for ip.
func (n *Node) Identity(ctx context.Context, ip string) (uint32, error) {
	var entries []struct {
		Prefix   string
		Identity uint32
	}
	if err := n.AgentGet(ctx, "/v1/ipcache", &entries); err != nil {
		return 0, err
	}
	for _, e := range entries {
		if e.Prefix == ip+"/32" {
			return e.Identity, nil
		}
	}
	return 0, fmt.Errorf("agent of %s: no ipcache entry for %s", n.Name, ip)
}
