//go:build linux

package bed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node is one node of a cluster: a network namespace on the underlay
// running the clustermesh-agent.
type Node struct {
	c     *Cluster
	Name  string
	Index int
	// IP and PodCIDR are the node's primary underlay address and pod
	// CIDR: the IPv4 ones (192.168.100.<10*cluster+index+1>,
	// 10.<cluster>.<index+1>.0/24), in an IPv6-only bed IP6 and PodCIDR6.
	IP      netip.Addr
	PodCIDR netip.Prefix
	// IP6 and PodCIDR6 are the node's IPv6 underlay address and pod CIDR
	// in a dual-stack or IPv6-only bed (fd00:cb::<10*cluster+index+1>,
	// fd00:10:<cluster>:<index+1>::/64), else invalid.
	IP6      netip.Addr
	PodCIDR6 netip.Prefix
	// Socket is the agent's API socket.
	Socket string
	// WireGuardDevice is the name of the node's WireGuard device.
	WireGuardDevice string

	netns  string
	cgroup string
	dir    string
	fwd    forwarder
	agent  *proc
	chain  *chain
}

func (c *Cluster) nodeName(i int) string { return fmt.Sprintf("%s-node-%c", c.Name, 'a'+i) }

// IPs are the node's underlay addresses, one per family: IP, then IP6 in
// a dual-stack bed (IP6 alone in an IPv6-only bed).
func (n *Node) IPs() []netip.Addr { return nodeAddrs(n.c.ID, n.Index, n.c.b.fam) }

// PodCIDRs are the node's pod CIDRs, one per family: PodCIDR, then
// PodCIDR6 in a dual-stack bed (PodCIDR6 alone in an IPv6-only bed).
func (n *Node) PodCIDRs() []netip.Prefix { return nodePodCIDRs(n.c.ID, n.Index, n.c.b.fam) }

// registerNode creates the Node object as a kubelet registers it: pod CIDRs
// (one per family), InternalIPs on the underlay, Ready.
func (c *Cluster) registerNode(ctx context.Context, i int) error {
	name := c.nodeName(i)
	var cidrs []string
	for _, p := range nodePodCIDRs(c.ID, i, c.b.fam) {
		cidrs = append(cidrs, p.String())
	}
	nodes := c.Client.CoreV1().Nodes()
	n, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Spec: corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("register node %s: %w", name, err)
	}
	n.Status.Addresses = nil
	for _, ip := range nodeAddrs(c.ID, i, c.b.fam) {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// startNode creates the node's namespace, plugs it into the underlay and
// runs its agent.
func (c *Cluster) startNode(ctx context.Context, i int) (*Node, error) {
	b := c.b
	n := &Node{c: c, Name: c.nodeName(i), Index: i, WireGuardDevice: fmt.Sprintf("wg%s-%d%c", b.run, c.ID, 'a'+i)}
	ips, cidrs := n.IPs(), n.PodCIDRs()
	n.IP, n.PodCIDR = ips[0], cidrs[0]
	if b.fam.has6() {
		n.IP6, n.PodCIDR6 = ips[len(ips)-1], cidrs[len(cidrs)-1]
	}
	n.dir = filepath.Join(c.dir, fmt.Sprintf("n%c", 'a'+i))
	n.Socket = filepath.Join(n.dir, "agent.sock")
	b.logf("==> node %s: namespace, underlay %s, agent", n.Name, strings.Trim(fmt.Sprint(ips), "[]"))
	for _, d := range []string{n.dir, filepath.Join(n.dir, "bpffs"), filepath.Join(n.dir, "state")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	var err error
	if n.netns, err = b.newNetNS(fmt.Sprintf("cmbed%s-%s", b.run, n.Name), true); err != nil {
		return nil, err
	}
	if err := b.plug(n.netns, fmt.Sprintf("u%d%c", c.ID, 'a'+i), ips...); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	b.onClose(n.fwd.close)
	ports := []int{c.kubePort}
	for _, o := range b.Clusters() {
		if o.etcdPort != 0 {
			ports = append(ports, o.etcdPort)
		}
	}
	for _, p := range ports {
		if err := n.fwd.add(n.netns, p); err != nil {
			return nil, err
		}
	}
	bpffs := filepath.Join(n.dir, "bpffs")
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return nil, fmt.Errorf("node %s: mount bpffs at %s: %w", n.Name, bpffs, err)
	}
	b.record("mount", bpffs)
	b.onClose(func() error { return unix.Unmount(bpffs, unix.MNT_DETACH) })
	n.cgroup = filepath.Join(b.cgroupRoot, n.Name)
	if err := os.Mkdir(n.cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("node %s: cgroup: %w", n.Name, err)
	}
	args := append([]string{b.bin("clustermesh-agent"),
		"--node-name=" + n.Name, "--cluster-name=" + c.Name, "--cluster-id=" + strconv.Itoa(int(c.ID)),
		"--kubeconfig=" + c.kubeconfig, "--mesh-config-dir=" + c.meshDir(), "--api-socket=" + n.Socket,
		"--datapath=bpf", "--bpf-pin-dir=" + filepath.Join(bpffs, "clustermesh"), "--cgroup-root=" + n.cgroup,
		"--state-dir=" + filepath.Join(n.dir, "state"), "--health-addr=", "--metrics-addr=",
		"--enable-wireguard", "--wireguard-device=" + n.WireGuardDevice, "--wireguard-key-file=" + filepath.Join(n.dir, "wireguard.key"),
	}, c.agentArgs...)
	if c.cacheConfig != "" {
		args = append(args, "--clustermesh-cache-config="+c.cacheConfig)
	}
	n.agent = b.newProc(n.Name+"/clustermesh-agent", n.netns, "", args...)
	if err := n.StartAgent(ctx); err != nil {
		return nil, err
	}
	n.chain, err = newChain(b.bins, n)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// StartAgent (re)starts the node's agent and waits for its API socket.
func (n *Node) StartAgent(ctx context.Context) error {
	if err := n.c.b.start(n.agent); err != nil {
		return err
	}
	return n.c.b.waitUntil(ctx, time.Minute, "the agent of "+n.Name+" serving its API", func(context.Context) (bool, string) {
		c, err := net.Dial("unix", n.Socket)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	}, n.agent)
}

// KillAgent kills the node's agent with SIGKILL.
func (n *Node) KillAgent() error {
	n.c.b.logf("    kill -9 the agent of %s", n.Name)
	return n.agent.kill9()
}

// Cluster is the node's cluster.
func (n *Node) Cluster() *Cluster { return n.c }

// NetNS is the path of the node's network namespace.
func (n *Node) NetNS() string { return n.netns }

// AgentLog is the path of the agent's log.
func (n *Node) AgentLog() string { return n.agent.logPath }

// SendUDP sends one datagram from the node's namespace (not from a pod) to
// addr (ip:port, of either family): plaintext on the underlay, a control
// for captures.
func (n *Node) SendUDP(addr string, payload []byte) error {
	return netnsutil.Do(n.netns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
}
