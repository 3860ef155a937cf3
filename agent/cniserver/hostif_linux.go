package cniserver

import (
	"fmt"

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
