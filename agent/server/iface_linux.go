package server

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// hostIfIndex returns the index of interface name in the network namespace
// at nsPath (the agent's when empty).
func hostIfIndex(nsPath, name string) (int, error) {
	h, err := netnsutil.Netlink(nsPath)
	if err != nil {
		return 0, err
	}
	defer h.Close()
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
