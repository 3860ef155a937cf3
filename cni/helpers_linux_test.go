package cni_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/localapi"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/cli"
	"github.com/clustermesh/clustermesh/identity/podlabels"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

var (
	binsOnce sync.Once
	binsDir  string
	binsErr  error
)

// pluginBins builds the reference plugins (ptp, host-local, pinned in
// go.mod) and clustermesh-cni from this tree, once per test binary.
func pluginBins(t *testing.T) string {
	t.Helper()
	binsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clustermesh-cni-bin-")
		if err != nil {
			binsErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+"/",
			"github.com/containernetworking/plugins/plugins/main/ptp",
			"github.com/containernetworking/plugins/plugins/ipam/host-local",
			"github.com/clustermesh/clustermesh/cmd/clustermesh-cni")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binsErr = fmt.Errorf("build CNI plugins: %w\n%s", err, out)
			return
		}
		binsDir = dir
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return binsDir
}

// newNetNS creates a named network namespace with lo up (and forwarding
// on, for a node) and returns its path.
func newNetNS(t *testing.T, prefix string, forward bool) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
	path, err := netnsutil.NewNamed(name, forward)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	return path
}

// chain is a network configuration list: ptp with host-local, then
// clustermesh-cni.
type chain struct {
	cni   *libcni.CNIConfig
	list  *libcni.NetworkConfigList
	node  string // the node's netns: where the plugins run
	bins  string
	ipam  string
	sock  string
	cache string
}

func newChain(t *testing.T, bins, node, subnet, agentSocket, timeout string) *chain {
	t.Helper()
	c := &chain{node: node, bins: bins, ipam: t.TempDir(), sock: agentSocket, cache: t.TempDir()}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"podnet","plugins":[
		{"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},
		{"type":"clustermesh-cni","agentSocket":%q,"timeout":%q}]}`, subnet, c.ipam, agentSocket, timeout)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	c.list = list
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{bins}, c.cache, nil)
	return c
}

func (c *chain) rt(cid, podNS, ns, pod string) *libcni.RuntimeConf {
	args := [][2]string{{"IgnoreUnknown", "1"}}
	if ns != "" {
		args = append(args, [2]string{"K8S_POD_NAMESPACE", ns}, [2]string{"K8S_POD_NAME", pod})
	}
	return &libcni.RuntimeConf{ContainerID: cid, NetNS: podNS, IfName: "eth0", Args: args}
}

// add runs ADD of the whole chain for a pod and returns its IPv4 address.
func (c *chain) add(ctx context.Context, cid, podNS, ns, pod string) (netip.Addr, error) {
	var res *types100.Result
	err := netnsutil.Do(c.node, func() error {
		r, err := c.cni.AddNetworkList(ctx, c.list, c.rt(cid, podNS, ns, pod))
		if err != nil {
			return err
		}
		res, err = types100.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range res.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP.To4()); ok {
			return a, nil
		}
	}
	b, _ := json.Marshal(res)
	return netip.Addr{}, fmt.Errorf("no IPv4 address in the chain's result %s", b)
}

func (c *chain) check(ctx context.Context, cid, podNS, ns, pod string) error {
	return netnsutil.Do(c.node, func() error { return c.cni.CheckNetworkList(ctx, c.list, c.rt(cid, podNS, ns, pod)) })
}

func (c *chain) del(ctx context.Context, cid, podNS, ns, pod string) error {
	return netnsutil.Do(c.node, func() error { return c.cni.DelNetworkList(ctx, c.list, c.rt(cid, podNS, ns, pod)) })
}

// allocate creates the identity of pod's labels, as the
// clustermesh-apiserver would.
func allocate(t *testing.T, kube *k8stest.Cluster, pod *corev1.Pod, id int) {
	t.Helper()
	nsObj, err := kube.Client.CoreV1().Namespaces().Get(t.Context(), pod.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var strs []string
	for l := range podlabels.ForPod("cluster1", pod, nsObj).All() {
		strs = append(strs, l.String())
	}
	idc, err := cmv1.NewRESTClient(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmv1.CreateIdentity(t.Context(), idc, &cmv1.Identity{ObjectMeta: metav1.ObjectMeta{Name: strconv.Itoa(id)}, SecurityLabels: strs}); err != nil {
		t.Fatal(err)
	}
}

// reportIP fills the pod's status as the kubelet does after ADD.
func reportIP(t *testing.T, kube *k8stest.Cluster, pod *corev1.Pod, ip netip.Addr) {
	t.Helper()
	p, err := kube.Client.CoreV1().Pods(pod.Namespace).Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}}
	if _, err := kube.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// echoServer answers every line on TCP port in the pod's namespace.
func echoServer(t *testing.T, podNS string, port int) {
	t.Helper()
	var l net.Listener
	if err := netnsutil.Do(podNS, func() (err error) {
		l, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// dial connects from the pod's namespace.
func dial(podNS string, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netnsutil.Do(podNS, func() (err error) {
		c, err = net.DialTimeout("tcp4", dst.String(), timeout)
		return err
	})
	return c, err
}

// exchange sends a line and expects it back.
func exchange(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// reaches reports whether a TCP connection from the pod to dst completes
// an exchange.
func reaches(podNS string, dst netip.AddrPort) error {
	c, err := dial(podNS, dst, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return exchange(c, "ping\n")
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// getJSON decodes the answer of GET path on the agent's API socket.
func getJSON(t *testing.T, socket, path string, into any) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	if s, ok := into.(*string); ok {
		*s = string(body)
		return
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// waitFlow waits for the agent's GET /v1/flows?<query> to hold a flow that
// match accepts, and returns it.
func waitFlow(t *testing.T, socket, query, what string, match func(*flowapi.Flow) bool) flowapi.Flow {
	t.Helper()
	var found flowapi.Flow
	var seen []flowapi.Flow
	defer func() {
		if t.Failed() {
			t.Logf("GET /v1/flows?%s: %+v", query, seen)
		}
	}()
	testutil.Eventually(t, 5*time.Second, what+" in GET /v1/flows?"+query, func() bool {
		var body string
		getJSON(t, socket, "/v1/flows?"+query, &body)
		seen = seen[:0]
		for line := range strings.SplitSeq(strings.TrimSpace(body), "\n") {
			var l flowapi.Line
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("GET /v1/flows?%s: line %q: %v", query, line, err)
			}
			if l.Flow == nil {
				continue
			}
			seen = append(seen, *l.Flow)
			if match(l.Flow) {
				found = *l.Flow
				return true
			}
		}
		return false
	})
	return found
}

// waitDrop waits for the agent's GET /v1/drops to hold want from src (any
// source port), at any endpoint, at about the current time.
func waitDrop(t *testing.T, socket string, src netip.Addr, want localapi.DropRecord) {
	t.Helper()
	var seen []localapi.DropRecord
	defer func() {
		if t.Failed() {
			t.Logf("GET /v1/drops: %+v", seen)
		}
	}()
	testutil.Eventually(t, 5*time.Second, fmt.Sprintf("the drop %s -> %s (%s) in GET /v1/drops", src, want.Dst, want.Reason), func() bool {
		var resp localapi.DropsResponse
		getJSON(t, socket, "/v1/drops", &resp)
		seen = resp.Drops
		for _, d := range resp.Drops {
			got := d
			got.Time, got.Src, got.EndpointID = time.Time{}, netip.AddrPort{}, 0
			if got == want && d.Src.Addr() == src && d.EndpointID != 0 && time.Since(d.Time).Abs() < time.Minute {
				return true
			}
		}
		return false
	})
}

// checkFlow compares got with want, ignoring what the kernel chooses (time,
// endpoint ID, length), and checks that each end carries its label.
func checkFlow(t *testing.T, got, want flowapi.Flow, srcLabel, dstLabel string) {
	t.Helper()
	if !slices.Contains(got.Src.Labels, srcLabel) || !slices.Contains(got.Dst.Labels, dstLabel) {
		t.Errorf("flow labels %v -> %v, want %s and %s", got.Src.Labels, got.Dst.Labels, srcLabel, dstLabel)
	}
	if time.Since(got.Time).Abs() > time.Minute || got.EndpointID == 0 || got.Bytes == 0 {
		t.Errorf("flow time %v, endpoint %d, %d bytes: want now, an endpoint, a length", got.Time, got.EndpointID, got.Bytes)
	}
	got.Time, got.EndpointID, got.Bytes, got.Src.Labels, got.Dst.Labels = time.Time{}, 0, 0, nil, nil
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); d != "" {
		t.Errorf("flow (-want +got):\n%s", d)
	}
}

// runObserve runs `clustermesh observe args...` until it returns or ctx
// ends, and returns its output; out, when set, also receives it as it is
// printed.
func runObserve(ctx context.Context, t *testing.T, out *syncBuffer, args ...string) string {
	t.Helper()
	if out == nil {
		out = &syncBuffer{}
	}
	var errOut syncBuffer
	cmd := cli.New()
	cmd.SetOut(out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{"observe"}, args...))
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Errorf("clustermesh observe %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// syncBuffer is written by one goroutine and read by another.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// floodUDP sends n one-byte datagrams from the pod to dst as fast as it can.
func floodUDP(podNS string, dst netip.AddrPort, n int) error {
	return netnsutil.Do(podNS, func() error {
		c, err := net.Dial("udp4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.Write([]byte{'x'}); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		return nil
	})
}
