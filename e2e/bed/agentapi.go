package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
