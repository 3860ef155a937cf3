//go:build linux

package bed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/cli/mesh"
)

// Connect pairs cluster a with each of others through `clustermesh
// connect`, refreshes the mesh directories (the kubelet's Secret volume)
// and waits with `clustermesh status --wait` until every agent of the
// clusters involved is connected to and synced with its peers.
func (b *Bed) Connect(ctx context.Context, a string, others ...string) error {
	b.logf("==> connecting %s with %s", a, strings.Join(others, ", "))
	if _, err := b.CLI(ctx, "connect", "--context", a, "--destination-context", strings.Join(others, ",")); err != nil {
		return err
	}
	return b.syncAndWait(ctx, append([]string{a}, others...))
}

// Disconnect unpairs a from each of others and waits as Connect does.
func (b *Bed) Disconnect(ctx context.Context, a string, others ...string) error {
	b.logf("==> disconnecting %s from %s", a, strings.Join(others, ", "))
	if _, err := b.CLI(ctx, "disconnect", "--context", a, "--destination-context", strings.Join(others, ",")); err != nil {
		return err
	}
	return b.syncAndWait(ctx, append([]string{a}, others...))
}

func (b *Bed) syncAndWait(ctx context.Context, names []string) error {
	for _, name := range names {
		c := b.Cluster(name)
		if c == nil {
			return fmt.Errorf("no cluster %s in the bed", name)
		}
		if err := c.syncMeshDir(ctx); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := b.WaitStatus(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// WaitStatus runs `clustermesh status --wait` for the cluster, asking each
// node's agent on its socket.
func (b *Bed) WaitStatus(ctx context.Context, cluster string) error {
	c := b.Cluster(cluster)
	args := []string{"status", "--context", cluster, "--wait", "--wait-duration", "2m", "--wait-interval", "500ms"}
	for _, n := range c.Nodes {
		args = append(args, "--agent-socket", n.Name+"="+n.Socket)
	}
	if _, err := b.CLI(ctx, args...); err != nil {
		procs := []*proc{c.apiserver}
		for _, n := range c.Nodes {
			procs = append(procs, n.agent)
		}
		for _, p := range procs {
			if ok, _ := p.running(); !ok {
				return p.failure(err)
			}
		}
		return c.Nodes[0].agent.failure(err)
	}
	return nil
}

// syncMeshDir writes the mesh Secret into the cluster's mesh directory as
// the kubelet refreshes a Secret volume: files of peers no longer in the
// Secret are removed, certificates are written before the configs that
// name them.
func (c *Cluster) syncMeshDir(ctx context.Context) error {
	s, err := c.Client.CoreV1().Secrets(mesh.DefaultNamespace).Get(ctx, mesh.PeersSecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cluster %s: read the mesh Secret: %w", c.Name, err)
	}
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	// Files with a dot (certificates, keys) first.
	slices.SortFunc(keys, func(a, b string) int {
		da, db := strings.Contains(a, "."), strings.Contains(b, ".")
		if da != db {
			if da {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		tmp := filepath.Join(c.meshDir(), "."+k+".tmp")
		if err := os.WriteFile(tmp, s.Data[k], 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(c.meshDir(), k)); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(c.meshDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := s.Data[e.Name()]; !ok && !strings.HasPrefix(e.Name(), ".") {
			if err := os.Remove(filepath.Join(c.meshDir(), e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
