package netnsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NewNamed creates a named network namespace (/var/run/netns/<name>) with
// lo up and rp_filter off (and IPv4 forwarding on, for a node), and
// returns its path. The caller deletes it with netns.DeleteNamed.
func NewNamed(name string, forward bool) (string, error) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the new namespace
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- fmt.Errorf("create network namespace %s: %w", name, err)
			return
		}
		defer ns.Close()
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		sysctls := [][2]string{{"net/ipv4/conf/all/rp_filter", "0"}, {"net/ipv4/conf/default/rp_filter", "0"}}
		if forward {
			sysctls = append(sysctls, [2]string{"net/ipv4/ip_forward", "1"})
		}
		for _, kv := range sysctls {
			if err == nil {
				err = os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o600)
			}
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = netns.DeleteNamed(name)
		return "", err
	}
	return filepath.Join("/var/run/netns", name), nil
}
