//go:build linux

package bed

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// What a bed killed before its Close left (a namespace, a cgroup, a
// process naming its directory, a Partition's iptables rule) is removed by the next bed's sweep, and
// the ledger of a live process is left alone.
func TestLedgerSweep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (network namespaces, cgroups); run as root")
	}
	// A dead process: a PID above the kernel's pid_max, which no process
	// (nor thread) can have. The PID of a child that exited is not dead
	// for long: with pid_max 32768, packages running meanwhile that create
	// threads by the thousand (e2e/netpol's probes) reuse it within
	// seconds, and the sweep then took the ledger for a live bed's.
	raw, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	deadPID := pidMax + 1
	name := fmt.Sprintf("cmbed-sweep-%d", os.Getpid())
	if _, err := netnsutil.NewNamed(name, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	root, err := cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Join(cg, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeCgroup(cg) })
	// A rule of a Partition not healed (it matches nothing: the discard
	// port on loopback).
	rule := []string{"OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", "9", "-m", "comment", "--comment", name + " partition", "-j", "DROP"}
	if err := iptables(t.Context(), "-I", rule); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iptables(t.Context(), "-D", rule) })
	procDir := t.TempDir()
	// A process whose command line names the directory, as envtest's do.
	orphan := exec.Command("sh", "-c", "while :; do sleep 0.2; done", procDir) // $0 = procDir
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = orphan.Wait(); close(exited) }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })

	// A ledger directory of the test's own: beds of other packages running
	// now sweep the real one.
	defer func(d string) { ledgerDir = d }(ledgerDir)
	ledgerDir = t.TempDir()
	deadLedger := filepath.Join(ledgerDir, fmt.Sprintf("%d.ledger", deadPID))
	liveLedger := filepath.Join(ledgerDir, fmt.Sprintf("%d.ledger", os.Getppid()))
	body := fmt.Sprintf("cgroup %s\nnetns %s\nprocs %s\niptables %s\n", cg, name, procDir, strings.Join(rule, "\x1f"))
	for _, f := range []string{deadLedger, liveLedger} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(f) })
	}
	var out bytes.Buffer
	b := &Bed{out: &out, started: time.Now()}
	b.sweep(t.Context())
	if !strings.Contains(out.String(), fmt.Sprintf("process %d (gone) left: 4 resources", deadPID)) {
		t.Errorf("sweep said %q", out.String())
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there: %v", name, err)
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still there: %v", cg, err)
	}
	if err := iptables(t.Context(), "-C", rule); err == nil {
		t.Errorf("the dead bed's iptables rule %v is still there", rule)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the process naming the dead bed's directory still runs")
	}
	if _, err := os.Stat(deadLedger); !os.IsNotExist(err) {
		t.Errorf("the dead bed's ledger is kept: %v", err)
	}
	if _, err := os.Stat(liveLedger); err != nil {
		t.Errorf("the ledger of a live process was touched: %v", err)
	}
}
