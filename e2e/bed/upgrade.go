//go:build linux

package bed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// versionPkg is where the binaries' version is set at build time (the
// Makefile's LDFLAGS).
const versionPkg = "github.com/clustermesh/clustermesh/internal/version"

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// BuildAgent builds the clustermesh-agent binary of this source as
// version (vMAJOR.MINOR.PATCH[-pre], what its --version and status say, as
// `make bin VERSION=...` would) into the bed's binaries, and returns its
// path: the binary an upgrade (or a downgrade) rolls out.
func (b *Bed) BuildAgent(ctx context.Context, version string) (string, error) {
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("agent version %q: want vMAJOR.MINOR.PATCH, e.g. v0.8.0", version)
	}
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module's directory (run from inside the repository): %w", err)
	}
	out := filepath.Join(b.bins, "clustermesh-agent-"+version)
	b.logf("building clustermesh-agent %s", version)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X "+versionPkg+".version="+version, "-o", out, "./cmd/clustermesh-agent")
	cmd.Dir = strings.TrimSpace(string(root))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build clustermesh-agent %s: %w\n%s", version, err, msg)
	}
	b.logf("    built in %.1fs: %s", time.Since(start).Seconds(), out)
	return out, nil
}

// RestartAgent replaces the node's agent by binary, as a DaemonSet's
// rolling update replaces the node's pod: the running agent is stopped
// (SIGTERM; what it pinned in bpffs, its WireGuard key and its state
// directory stay, as on a node), then binary starts with the same
// arguments; it returns once the new agent serves its API.
func (n *Node) RestartAgent(ctx context.Context, binary string) error {
	fi, err := os.Stat(binary)
	if err != nil {
		return fmt.Errorf("node %s: agent binary: %w", n.Name, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("node %s: agent binary %s: not an executable file (mode %v)", n.Name, binary, fi.Mode())
	}
	n.c.b.logf("==> node %s: restart the agent as %s", n.Name, filepath.Base(binary))
	if err := n.agent.stop(); err != nil {
		return fmt.Errorf("node %s: stop the agent: %w", n.Name, err)
	}
	n.agent.mu.Lock()
	n.agent.args = append([]string{binary}, n.agent.args[1:]...)
	n.agent.mu.Unlock()
	return n.StartAgent(ctx)
}

// StopMesh stops the cluster's agents and its clustermesh-apiserver, as
// the kubelets stop the pods of the DaemonSet and Deployment `clustermesh
// uninstall` deleted.
func (c *Cluster) StopMesh() error {
	c.b.logf("==> cluster %s: stop the agents and the clustermesh-apiserver (their objects are gone)", c.Name)
	for _, n := range c.Nodes {
		if err := n.agent.stop(); err != nil {
			return fmt.Errorf("node %s: stop the agent: %w", n.Name, err)
		}
	}
	if err := c.apiserver.stop(); err != nil {
		return fmt.Errorf("cluster %s: stop the clustermesh-apiserver: %w", c.Name, err)
	}
	return nil
}
