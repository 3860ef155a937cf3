//go:build linux

package bed

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Partition cuts the control plane between two clusters, both ways: each
// cluster's clustermesh-apiserver (its cache of remote state) no longer
// reaches the other cluster's etcd. Its packets to that etcd's port are
// dropped (iptables in the host namespace, matched on the
// clustermesh-apiserver's cgroup), not refused, so established connections
// stall as across a real partition. Everything else keeps working: the
// pods' traffic and the tunnels between nodes, each cluster's agents with
// their own etcd (their forwarders are not in that cgroup), the CLI.
//
// heal removes the rules; it is safe to call more than once, and Close
// calls it for a partition left in place. A bed killed before either
// leaves the rules in its ledger, and the next bed removes them.
func (b *Bed) Partition(ctx context.Context, c1, c2 string) (heal func() error, err error) {
	if b.direct {
		return nil, errors.New("partition: the bed runs with DirectPeers (every agent reads the peers' etcd from its node): Partition cuts the caches of remote state only; run the bed with the cache")
	}
	a, z := b.Cluster(c1), b.Cluster(c2)
	if a == nil || z == nil || a == z {
		return nil, fmt.Errorf("partition %q and %q: name two different clusters of the bed", c1, c2)
	}
	root, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	var rules [][]string
	for _, d := range [][2]*Cluster{{a, z}, {z, a}} {
		from, to := d[0], d[1]
		rel, err := filepath.Rel(root, from.apiCgroup)
		if err != nil || from.apiCgroup == "" || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("partition: the clustermesh-apiserver of %s has no cgroup under %s (%q)", from.Name, root, from.apiCgroup)
		}
		rules = append(rules, []string{"OUTPUT", "-p", "tcp", "-m", "cgroup", "--path", rel,
			"--dport", strconv.Itoa(to.etcdPort), "-m", "comment", "--comment",
			"clustermesh-bed-" + b.run + " partition " + from.Name + " -> " + to.Name, "-j", "DROP"})
	}
	var (
		mu    sync.Mutex
		added [][]string
	)
	heal = func() error {
		mu.Lock()
		defer mu.Unlock()
		var errs []error
		for _, r := range added {
			if err := iptables(context.WithoutCancel(ctx), "-D", r); err != nil {
				errs = append(errs, err)
			}
		}
		added = nil
		if len(errs) == 0 {
			b.logf("    partition %s | %s healed", c1, c2)
		}
		return errors.Join(errs...)
	}
	b.onClose(heal)
	for _, r := range rules {
		b.record("iptables", strings.Join(r, "\x1f"))
		if err := iptables(ctx, "-I", r); err != nil {
			return nil, errors.Join(err, heal())
		}
		mu.Lock()
		added = append(added, r)
		mu.Unlock()
	}
	b.logf("    partition %s | %s: their clustermesh-apiservers' packets to each other's etcd dropped", c1, c2)
	return heal, nil
}

// iptables runs iptables (waiting for the xtables lock) with op and the
// rule's chain and spec.
func iptables(ctx context.Context, op string, rule []string) error {
	args := append([]string{"-w", "5", op}, rule...)
	out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s (the bed needs iptables with the cgroup and comment matches)", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
