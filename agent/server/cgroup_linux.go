package server

import (
	"errors"

	"golang.org/x/sys/unix"
)

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
