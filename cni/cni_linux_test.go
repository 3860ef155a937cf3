package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

type agentRun struct {
	agent *server.Agent
	stop  func()
}

func startAgent(t *testing.T, cfg server.Config) *agentRun {
	t.Helper()
	a, err := server.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	r := &agentRun{agent: a, stop: sync.OnceFunc(func() { cancel(); <-done })}
	t.Cleanup(r.stop)
	testutil.Eventually(t, 30*time.Second, "agent API socket", func() bool {
		_, err := os.Stat(cfg.APISocket)
		return err == nil
	})
	return r
}

// The real CNI chain (ptp + host-local, then clustermesh-cni) wires pods
// of a node namespace; the agent attaches the tc programs to their
// host-side veths, so a NetworkPolicy decides real traffic between them.
// The attachment survives an agent restart; DEL detaches; bad calls fail
// with a message saying what to fix.
func TestChainEnforcesPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the kube-apiserver test bed")
	}
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (network namespaces, BPF, bpffs); run as root")
	}
	bins := pluginBins(t)
	bpffs := t.TempDir()
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs at %s: %v", bpffs, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, 0) })

	kube := k8stest.Start(t)
	const ns, nodeName = "cni", "node-cni"
	kube.CreateNamespace(t, ns)
	node := newNetNS(t, "cm-node", true)
	sock := filepath.Join(os.TempDir(), "cm-cni-test.sock")
	cfg := server.Config{
		NodeName: nodeName, ClusterName: "cluster1", ClusterID: 1, MeshConfigDir: t.TempDir(), APISocket: sock,
		RestConfig: kube.Config, Datapath: "bpf", BPFPinDir: filepath.Join(bpffs, "cm"),
		EndpointNetNS: node, StateDir: t.TempDir(), NoEvents: true,
	}
	run := startAgent(t, cfg)
	ch := newChain(t, bins, node, "10.244.1.0/24", sock, "60s")

	type podInfo struct {
		pod   *corev1.Pod
		netns string
		cid   string
		ip    netip.Addr
		id    int
	}
	pods := map[string]*podInfo{}
	for i, name := range []string{"server", "client", "other"} {
		p := kube.CreatePod(t, ns, name, map[string]string{"app": name}, corev1.PodSpec{NodeName: nodeName}, "", "")
		pods[name] = &podInfo{pod: p, netns: newNetNS(t, "cm-pod", false), cid: "ctr-" + name, id: 70001 + i}
		allocate(t, kube, p, 70001+i)
	}
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: ns}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: new(intstr.FromInt32(8080))}},
		}},
	}}
	if _, err := kube.Client.NetworkingV1().NetworkPolicies(ns).Create(t.Context(), np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// ADD returns once the pod's policy is enforced on its interface.
	for _, name := range []string{"server", "client", "other"} {
		p := pods[name]
		ip, err := ch.add(t.Context(), p.cid, p.netns, ns, name)
		if err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		p.ip = ip
		reportIP(t, kube, p.pod, ip)
	}
	held, err := run.agent.Datapath.Attachments().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 3 {
		t.Fatalf("attachments in the kernel after three ADDs: %+v", held)
	}
	// Every pod's address is known with its identity (the datapath needs
	// it to identify the peer).
	testutil.Eventually(t, 30*time.Second, "the pods' identities in the kernel ipcache", func() bool {
		got, err := run.agent.Datapath.IPCache().List(t.Context())
		if err != nil {
			return false
		}
		for _, p := range pods {
			if got[netip.PrefixFrom(p.ip, 32)].Identity != identity.NumericIdentity(p.id) {
				return false
			}
		}
		return true
	})

	echoServer(t, pods["server"].netns, 8080)
	echoServer(t, pods["server"].netns, 9090)
	srv := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(pods["server"].ip, port) }
	if err := reaches(pods["client"].netns, srv(8080)); err != nil {
		t.Fatalf("client -> server:8080 (allowed by the policy): %v", err)
	}
	denied := func() uint64 {
		m, err := run.agent.Datapath.(*bpfdp.Datapath).BPF().Metrics()
		if err != nil {
			t.Fatal(err)
		}
		return m[bpf.MetricKey{Ingress: true, Reason: bpf.ReasonPolicyDenied}].Packets
	}
	before := denied()
	if err := reaches(pods["client"].netns, srv(9090)); err == nil {
		t.Fatal("client -> server:9090: want dropped (port not allowed)")
	}
	if err := reaches(pods["other"].netns, srv(8080)); err == nil {
		t.Fatal("other -> server:8080: want dropped (peer not allowed)")
	}
	testutil.Eventually(t, 5*time.Second, "policy-denied drops counted for the denied connections", func() bool { return denied() > before })
	// The agent records each denied connection with both identities and
	// the reason, for the user: GET /v1/drops on its socket.
	waitDrop(t, sock, pods["client"].ip, localapi.DropRecord{Direction: "ingress", Reason: "policy-denied", Dst: srv(9090), Protocol: 6,
		SrcIdentity: uint32(pods["client"].id), DstIdentity: uint32(pods["server"].id), SrcCluster: "cluster1", DstCluster: "cluster1"})
	waitDrop(t, sock, pods["other"].ip, localapi.DropRecord{Direction: "ingress", Reason: "policy-denied", Dst: srv(8080), Protocol: 6,
		SrcIdentity: uint32(pods["other"].id), DstIdentity: uint32(pods["server"].id), SrcCluster: "cluster1", DstCluster: "cluster1"})
	// The same as flows, both ends named and labeled: the denied SYN, and
	// the allowed connection with its reply (the SYN-ACK).
	client, server := pods["client"], pods["server"]
	drop := waitFlow(t, sock, "verdict=dropped&from-pod=cni/client&to-pod=cni/server&port=9090", "the denied SYN", func(f *flowapi.Flow) bool {
		return f.TCPFlags == flowapi.SYN
	})
	wantEnd := func(p *podInfo, name string, port uint16) flowapi.Endpoint {
		return flowapi.Endpoint{IP: p.ip, Port: port, Identity: uint32(p.id), Cluster: "cluster1", Namespace: ns, Pod: name}
	}
	checkFlow(t, drop, flowapi.Flow{Node: nodeName, Direction: "ingress", Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoTCP,
		TCPFlags: flowapi.SYN, Src: wantEnd(client, "client", drop.Src.Port), Dst: wantEnd(server, "server", 9090)}, "k8s:app=client", "k8s:app=server")
	allowed := waitFlow(t, sock, "verdict=forwarded&from-pod=cni/client&to-pod=cni/server&port=8080", "the allowed SYN at the server", func(f *flowapi.Flow) bool {
		return f.Direction == "ingress" && f.Reason == "policy-allow"
	})
	checkFlow(t, allowed, flowapi.Flow{Node: nodeName, Direction: "ingress", Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoTCP,
		TCPFlags: flowapi.SYN, Src: wantEnd(client, "client", allowed.Src.Port), Dst: wantEnd(server, "server", 8080)}, "k8s:app=client", "k8s:app=server")
	reply := waitFlow(t, sock, fmt.Sprintf("from-pod=cni/server&to-pod=cni/client&port=%d", allowed.Src.Port), "the SYN-ACK leaving the server", func(f *flowapi.Flow) bool {
		return f.IsReply && f.Direction == "egress"
	})
	checkFlow(t, reply, flowapi.Flow{Node: nodeName, Direction: "egress", Verdict: "forwarded", Reason: "ct-reply", Protocol: flowapi.ProtoTCP,
		TCPFlags: flowapi.SYN | flowapi.ACK, IsReply: true, Src: wantEnd(server, "server", 8080), Dst: wantEnd(client, "client", allowed.Src.Port)}, "k8s:app=server", "k8s:app=client")
	// As a user reads them: `clustermesh observe` finds the drop, and with
	// --follow prints a new one as it happens.
	agentSocket := "--agent-socket=" + nodeName + "=" + sock
	out := runObserve(t.Context(), t, nil, agentSocket, "--from-pod", "cni/client", "--verdict", "dropped", "--port", "9090")
	if want := fmt.Sprintf(" cluster1/cni/client:%d -> cluster1/cni/server:9090 TCP SYN DROPPED (policy-denied)\n", drop.Src.Port); !strings.Contains(out, want) {
		t.Errorf("clustermesh observe:\n%s\nwant a line ending in %q", out, want)
	}
	followCtx, stopFollow := context.WithCancel(t.Context())
	var followed syncBuffer
	followDone := make(chan string, 1)
	go func() {
		followDone <- runObserve(followCtx, t, &followed, agentSocket, "--follow", "--from-pod", "cni/other", "--verdict", "dropped")
	}()
	// A drop before the stream is open is not followed: attempts go on
	// until one is printed, and the time is counted from the first (an
	// upper bound of the delay).
	attempt := time.Now()
	attempting, stopAttempts := context.WithCancel(t.Context())
	attempted := make(chan error, 1)
	go func() {
		var err error
		for attempting.Err() == nil {
			if err = reaches(pods["other"].netns, srv(8080)); err == nil {
				break
			}
		}
		attempted <- err
	}()
	line := " -> cluster1/cni/server:8080 TCP SYN DROPPED (policy-denied)"
	var printed time.Duration
	testutil.Eventually(t, 5*time.Second, "observe --follow printing the new drop", func() bool {
		if strings.Contains(followed.String(), line) {
			printed = time.Since(attempt)
			return true
		}
		return false
	})
	stopAttempts()
	stopFollow()
	<-followDone
	if err := <-attempted; err == nil {
		t.Error("other -> server:8080 while followed: want dropped")
	}
	t.Logf("observe --follow printed the drop at most %v after the first connection attempt (poll every 10ms):\n%s", printed.Round(time.Millisecond), followed.String())
	// A flood of denied datagrams: the agent keeps answering, observe
	// still reads it, and every drop the kernel counted is a recorded flow
	// or a counted lost event.
	counter := func(name, label, value string) float64 {
		mfs, err := run.agent.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if mf.GetName() == name && l.GetName() == label && l.GetValue() == value {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	kernelBefore := denied()
	recordedBefore := counter("clustermesh_agent_drops_total", "reason", "policy-denied")
	lostBefore := counter("clustermesh_agent_flow_events_lost_total", "source", "datapath")
	const flood = 200000
	flooded := make(chan error, 1)
	floodStart := time.Now()
	go func() { flooded <- floodUDP(pods["other"].netns, srv(9999), flood) }()
	var slowest time.Duration
	for sending := true; sending; {
		select {
		case err := <-flooded:
			if err != nil {
				t.Fatalf("flood: %v", err)
			}
			sending = false
		case <-time.After(10 * time.Millisecond):
			asked := time.Now()
			var st localapi.StatusResponse
			getJSON(t, sock, "/v1/status", &st)
			slowest = max(slowest, time.Since(asked))
		}
	}
	floodTook := time.Since(floodStart)
	var kernel, recorded, lost float64
	testutil.Eventually(t, 10*time.Second, "every denied datagram of the flood a flow or a counted loss", func() bool {
		kernel = float64(denied() - kernelBefore)
		recorded = counter("clustermesh_agent_drops_total", "reason", "policy-denied") - recordedBefore
		lost = counter("clustermesh_agent_flow_events_lost_total", "source", "datapath") - lostBefore
		return kernel >= flood && recorded+lost == kernel
	})
	out = runObserve(t.Context(), t, nil, agentSocket, "--verdict", "dropped", "--port", "9999", "--last", "3")
	if n := strings.Count(out, "-> cluster1/cni/server:9999 UDP DROPPED (policy-denied)\n"); n != 3 {
		t.Errorf("observe after the flood: %d of the flood's drops, want 3:\n%s", n, out)
	}
	t.Logf("flood of %d denied datagrams in %v (%.0f/s): %.0f drops counted by the kernel, %.0f recorded as flows, %.0f lost (counted); GET /v1/status during the flood: slowest %v",
		flood, floodTook.Round(time.Millisecond), flood/floodTook.Seconds(), kernel, recorded, lost, slowest.Round(time.Millisecond))
	// The server itself is not isolated for egress, and replies flow.
	echoServer(t, pods["other"].netns, 7070)
	if err := reaches(pods["server"].netns, netip.AddrPortFrom(pods["other"].ip, 7070)); err != nil {
		t.Fatalf("server -> other:7070 (nothing isolates it): %v", err)
	}
	if err := ch.check(t.Context(), pods["client"].cid, pods["client"].netns, ns, "client"); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// An established connection and the enforcement survive a restart of
	// the agent, which reloads the attachments from --state-dir.
	conn, err := dial(pods["client"].netns, srv(8080), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run.stop()
	run = startAgent(t, cfg)
	if err := exchange(conn, "after restart\n"); err != nil {
		t.Fatalf("established connection across an agent restart: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, "the agent ready again", func() bool {
		st := run.agent.API.Status()
		for _, r := range st.Reconcilers {
			if r.Name == "attachments" && r.Desired == 3 && r.Applied == 3 {
				return true
			}
		}
		return false
	})
	if err := reaches(pods["other"].netns, srv(8080)); err == nil {
		t.Fatal("other -> server:8080 after the restart: want dropped")
	}
	if err := reaches(pods["client"].netns, srv(8080)); err != nil {
		t.Fatalf("client -> server:8080 after the restart: %v", err)
	}

	// DEL detaches; a second DEL is fine.
	o := pods["other"]
	oat, ok := run.agent.State.Snapshot().Attachment(datapath.AttachmentKey(o.cid, "eth0"))
	if !ok {
		t.Fatal("other's attachment is not in the agent's state")
	}
	for range 2 {
		if err := ch.del(t.Context(), o.cid, o.netns, ns, "other"); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "other's attachment removed", func() bool {
		held, err := run.agent.Datapath.Attachments().List(t.Context())
		_, still := held[oat.HostIfIndex]
		return err == nil && len(held) == 2 && !still
	})

	// Bad calls say what to fix.
	bad := newNetNS(t, "cm-pod", false)
	if _, err := ch.add(t.Context(), "ctr-anon", bad, "", ""); !contains(err, "K8S_POD_NAME") {
		t.Fatalf("ADD without the pod's name: %v", err)
	}
	short := newChain(t, bins, node, "10.244.2.0/24", sock, "2s")
	if _, err := short.add(t.Context(), "ctr-ghost", newNetNS(t, "cm-pod", false), ns, "ghost"); !contains(err, "pod cni/ghost is not known on node node-cni") {
		t.Fatalf("ADD of a pod the API does not have: %v", err)
	}
}
