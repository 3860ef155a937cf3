//go:build linux

package bed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ledgerDir holds one file per running bed process listing the namespaces,
// mounts and cgroups it made, so that the next bed removes what a bed
// killed before its Close (a test timeout, SIGKILL) left behind. The
// processes of a killed bed die with it (parent-death signal), but for
// envtest's, which the ledger names by their directories.
var ledgerDir = "/run/clustermesh-bed" // a variable for the test of the sweep

func (b *Bed) ledgerPath() string {
	return filepath.Join(ledgerDir, strconv.Itoa(os.Getpid())+".ledger")
}

// record notes a resource in the ledger ("netns NAME", "mount PATH",
// "cgroup PATH", "procs DIR": processes whose command line names DIR,
// "iptables CHAIN\x1fSPEC...": a rule of Partition).
func (b *Bed) record(kind, what string) {
	b.ledgerMu.Lock()
	defer b.ledgerMu.Unlock()
	if err := os.MkdirAll(ledgerDir, 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(b.ledgerPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", kind, what)
}

// sweep removes what beds of dead processes left, and reports it.
func (b *Bed) sweep(ctx context.Context) {
	files, _ := filepath.Glob(filepath.Join(ledgerDir, "*.ledger"))
	for _, file := range files {
		pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(file), ".ledger"))
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		lines, err := readLines(file)
		if err != nil {
			continue
		}
		slices.Reverse(lines)
		var errs []error
		for _, l := range lines {
			kind, what, _ := strings.Cut(l, " ")
			switch kind {
			case "procs":
				killByArg(what)
			case "netns":
				if err := netns.DeleteNamed(what); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			case "mount":
				if err := unix.Unmount(what, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			case "iptables": // a Partition's rule; already gone once healed
				_ = iptables(ctx, "-D", strings.Split(what, "\x1f"))
			case "cgroup":
				if err := removeCgroup(what); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if len(errs) == 0 {
			_ = os.Remove(file)
		}
		b.logf("removed what the bed of process %d (gone) left: %d resources; %v", pid, len(lines), errors.Join(errs...))
	}
}

// killByArg kills the processes whose command line names dir (envtest's
// kube-apiserver and etcd of a bed that was killed).
func killByArg(dir string) {
	if dir == "" {
		return
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		out = append(out, s.Text())
	}
	return out, s.Err()
}
