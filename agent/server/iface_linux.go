package server

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// hostIfIndex returns the index of interface name in the network namespace
// at nsPath (the agent's when empty).
func hostIfIndex(nsPath, name string) (int, error) {
	h := &netlink.Handle{}
	if nsPath != "" {
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			return 0, fmt.Errorf("open network namespace %s: %w", nsPath, err)
		}
		defer ns.Close()
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return 0, fmt.Errorf("netlink in %s: %w", nsPath, err)
		}
		defer h.Close()
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("host interface %q: %w", name, err)
	}
	return l.Attrs().Index, nil
}

// cgroup2Root returns the cgroup v2 mount: /sys/fs/cgroup (unified
// hierarchy) or /sys/fs/cgroup/unified (hybrid).
func cgroup2Root() (string, error) {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir, nil
		}
	}
	return "", errors.New("no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified; mount cgroup2 or pass --cgroup-root")
}
