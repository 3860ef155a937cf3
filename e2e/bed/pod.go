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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/e2e/workload"
)

// WorkloadPort is the port every pod's meshecho answers on (TCP and UDP).
const WorkloadPort = 80

// Pod is a pod of the bed: a network namespace wired by the CNI chain,
// running meshecho.
type Pod struct {
	*workload.Client
	Namespace, Name string
	Labels          map[string]string
	// IP is the pod's primary address: IPv4, in an IPv6-only bed IP6.
	IP netip.Addr
	// IP6 is the pod's IPv6 address in a dual-stack or IPv6-only bed,
	// else invalid.
	IP6  netip.Addr
	Node *Node

	netns       string
	containerID string
	proc        *proc
	cgroup      string
}

// AddPod runs a pod on node as the kubelet and container runtime would:
// the Pod object, the CNI chain (ADD returns once the agent enforces the
// pod's policy), meshecho in the pod's namespace and the node's cgroup,
// then the status (IP, Running, Ready).
func (n *Node) AddPod(ctx context.Context, namespace, name string, labels map[string]string) (*Pod, error) {
	return n.AddPodWith(ctx, namespace, name, labels, PodOptions{})
}

// PodOptions are what AddPodWith adds to a pod of AddPod.
type PodOptions struct {
	// Ports, when set, are the container ports of the Pod object (named
	// ports policies can refer to) instead of the workload port's "http"
	// and "udp" (which the bed's Services name as their target). Serving
	// those other than the workload port is the caller's (in the pod's
	// NetNS).
	Ports []corev1.ContainerPort
}

// AddPodWith is AddPod with options.
func (n *Node) AddPodWith(ctx context.Context, namespace, name string, labels map[string]string, opts PodOptions) (*Pod, error) {
	b := n.c.b
	core := n.c.Client.CoreV1()
	if _, err := core.Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create namespace %s in %s: %w", namespace, n.c.Name, err)
		}
	}
	ports := opts.Ports
	if ports == nil {
		ports = []corev1.ContainerPort{{Name: "http", ContainerPort: WorkloadPort, Protocol: corev1.ProtocolTCP},
			{Name: "udp", ContainerPort: WorkloadPort, Protocol: corev1.ProtocolUDP}}
	}
	obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{NodeName: n.Name, Containers: []corev1.Container{{Name: "meshecho", Image: "meshecho", Ports: ports}}}}
	if _, err := core.Pods(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s/%s in %s: %w", namespace, name, n.c.Name, err)
	}
	p := &Pod{Namespace: namespace, Name: name, Labels: labels, Node: n, containerID: "bed-" + namespace + "-" + name}
	var err error
	if p.netns, err = b.newNetNS(fmt.Sprintf("cmbed%s-%s-%s-%s", b.run, n.Name, namespace, name), false); err != nil {
		return nil, err
	}
	ips, err := n.chain.add(ctx, p)
	if err != nil {
		return nil, n.agent.failure(err)
	}
	p.IP = ips[0]
	if b.fam.has6() {
		p.IP6 = ips[len(ips)-1]
	}
	p.cgroup = filepath.Join(n.cgroup, namespace+"_"+name)
	if err := os.Mkdir(p.cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("pod %s/%s: cgroup: %w", namespace, name, err)
	}
	sock := filepath.Join(n.dir, "pod-"+namespace+"-"+name+".sock")
	p.proc = b.newProc(n.Name+"/pod-"+namespace+"-"+name, p.netns, p.cgroup, b.bin("meshecho"),
		"--cluster="+n.c.Name, "--namespace="+namespace, "--pod="+name, "--port="+strconv.Itoa(WorkloadPort), "--control="+sock)
	if err := b.start(p.proc); err != nil {
		return nil, err
	}
	p.Client = workload.NewClient(sock)
	if err := b.waitUntil(ctx, 30*time.Second, "meshecho of "+namespace+"/"+name+" serving", func(context.Context) (bool, string) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	}, p.proc); err != nil {
		return nil, err
	}
	if err := p.writeStatus(ctx, true); err != nil {
		return nil, err
	}
	b.logf("    pod %s/%s/%s on %s: %s", n.c.Name, namespace, name, n.Name, strings.Trim(fmt.Sprint(p.IPs()), "[]"))
	return p, nil
}

// SetReady writes the pod's Ready condition, as the kubelet does when a
// readiness probe starts or stops passing.
func (p *Pod) SetReady(ctx context.Context, ready bool) error { return p.writeStatus(ctx, ready) }

func (p *Pod) writeStatus(ctx context.Context, ready bool) error {
	pods := p.Node.c.Client.CoreV1().Pods(p.Namespace)
	obj, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	start := obj.Status.StartTime
	if start == nil {
		start = &now
	}
	var podIPs []corev1.PodIP
	for _, ip := range p.IPs() {
		podIPs = append(podIPs, corev1.PodIP{IP: ip.String()})
	}
	var hostIPs []corev1.HostIP
	for _, ip := range p.Node.IPs() {
		hostIPs = append(hostIPs, corev1.HostIP{IP: ip.String()})
	}
	obj.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP.String(), PodIPs: podIPs,
		HostIP: p.Node.IP.String(), HostIPs: hostIPs, StartTime: start,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: *start},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: *start},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "meshecho", Image: "meshecho", Ready: ready, Started: &ready,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *start}}}},
	}
	if _, err := pods.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// Addr is the pod's primary IP (IPv4, in an IPv6-only bed IPv6) with the
// workload port.
func (p *Pod) Addr() string { return netip.AddrPortFrom(p.IP, WorkloadPort).String() }

// Addr6 is the pod's IPv6 address with the workload port ([ip6]:port), in
// a dual-stack or IPv6-only bed.
func (p *Pod) Addr6() string { return netip.AddrPortFrom(p.IP6, WorkloadPort).String() }

// IPs are the pod's addresses, one per family: IP, then IP6 if it has one
// of each.
func (p *Pod) IPs() []netip.Addr {
	if p.IP6.IsValid() && p.IP6 != p.IP {
		return []netip.Addr{p.IP, p.IP6}
	}
	return []netip.Addr{p.IP}
}

// String is cluster/namespace/name, as meshecho answers.
func (p *Pod) String() string { return p.Node.c.Name + "/" + p.Namespace + "/" + p.Name }

// NetNS is the path of the pod's network namespace.
func (p *Pod) NetNS() string { return p.netns }

// PodObject is a pod that exists only in the Kubernetes API: the bed
// writes its status as a kubelet would, but runs no namespace or process
// for it (control-plane benchmarks).
type PodObject struct {
	Namespace, Name string
	IP              netip.Addr
	Node            *Node
}

// CreatePodObject creates a Pod bound to the node, with no status yet.
func (n *Node) CreatePodObject(ctx context.Context, namespace, name string, labels map[string]string, ip netip.Addr) (*PodObject, error) {
	obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{NodeName: n.Name, Containers: []corev1.Container{{Name: "meshecho", Image: "meshecho"}}}}
	if _, err := n.c.Client.CoreV1().Pods(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s/%s in %s: %w", namespace, name, n.c.Name, err)
	}
	return &PodObject{Namespace: namespace, Name: name, IP: ip, Node: n}, nil
}

// SetRunning writes the pod's status: Running with its IP, Ready.
func (p *PodObject) SetRunning(ctx context.Context) error {
	return (&Pod{Namespace: p.Namespace, Name: p.Name, IP: p.IP, Node: p.Node}).writeStatus(ctx, true)
}
