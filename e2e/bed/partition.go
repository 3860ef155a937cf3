//go:build linux

package bed

import (
	"context"
	"errors"
	"fmt"
	"os"
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
// clustermesh-apiserver's cgroup), and so are that etcd's packets to the
// local ports of its connections open at the cut: dropped, not refused, so
// established connections stall as across a real partition. Everything else keeps working: the
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
		removed := len(added) > 0
		added = nil
		if len(errs) == 0 && removed {
			b.logf("    partition %s | %s healed", c1, c2)
		}
		return errors.Join(errs...)
	}
	b.onClose(heal)
	insert := func(r []string) error {
		b.record("iptables", strings.Join(r, "\x1f"))
		if err := iptables(ctx, "-I", r); err != nil {
			return err
		}
		mu.Lock()
		added = append(added, r)
		mu.Unlock()
		return nil
	}
	for _, d := range [][2]*Cluster{{a, z}, {z, a}} {
		from, to := d[0], d[1]
		rel, err := filepath.Rel(root, from.apiCgroup)
		if err != nil || from.apiCgroup == "" || strings.HasPrefix(rel, "..") {
			return nil, errors.Join(fmt.Errorf("partition: the clustermesh-apiserver of %s has no cgroup under %s (%q)", from.Name, root, from.apiCgroup), heal())
		}
		comment := []string{"-m", "comment", "--comment", "clustermesh-bed-" + b.run + " partition " + from.Name + " -> " + to.Name}
		// New connections (and what the cache sends on the established
		// ones): dropped on their way to the peer's etcd.
		if err := insert(append([]string{"OUTPUT", "-p", "tcp", "-m", "cgroup", "--path", rel,
			"-d", "127.0.0.1", "--dport", strconv.Itoa(to.etcdPort)}, append(comment, "-j", "DROP")...)); err != nil {
			return nil, errors.Join(err, heal())
		}
		// What the peer's etcd sends on the connections established before
		// the cut: a receiver delivers data whether or not its ACKs get
		// through, so that direction is cut by the cache's local ports
		// (listed after the rule above: no connection can be set up since).
		ports, err := connectedPorts(from.apiserver, to.etcdPort)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("partition: the connections of %s's clustermesh-apiserver: %w", from.Name, err), heal())
		}
		for _, port := range ports {
			if err := insert(append([]string{"OUTPUT", "-p", "tcp", "-s", "127.0.0.1", "--sport", strconv.Itoa(to.etcdPort),
				"-d", "127.0.0.1", "--dport", strconv.Itoa(port)}, append(comment, "-j", "DROP")...)); err != nil {
				return nil, errors.Join(err, heal())
			}
		}
	}
	b.logf("    partition %s | %s: %d rules drop the packets between their clustermesh-apiservers and each other's etcd", c1, c2, len(added))
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

// connectedPorts lists the local ports of the process's TCP sockets (IPv4,
// in any state) whose remote end is 127.0.0.1:port.
func connectedPorts(p *proc, port int) ([]int, error) {
	p.mu.Lock()
	if p.cmd == nil || p.cmd.Process == nil || p.exitedLocked() {
		p.mu.Unlock()
		return nil, fmt.Errorf("%s is not running", p.name)
	}
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	lines, err := readLines("/proc/" + strconv.Itoa(pid) + "/net/tcp")
	if err != nil {
		return nil, err
	}
	remote := fmt.Sprintf("0100007F:%04X", port)
	var out []int
	for _, l := range lines[min(1, len(lines)):] { // the first line is the header
		f := strings.Fields(l)
		if len(f) < 10 || f[2] != remote || !inodes[f[9]] {
			continue
		}
		_, lp, _ := strings.Cut(f[1], ":")
		n, err := strconv.ParseUint(lp, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/net/tcp: local address %q: %w", pid, f[1], err)
		}
		out = append(out, int(n))
	}
	return out, nil
}
