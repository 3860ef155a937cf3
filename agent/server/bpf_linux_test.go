package server_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// With --datapath=bpf the agent programs the kernel's maps; a restarted
// agent adopts what the previous one pinned and keeps it while its sources
// are not ready.
func TestAgentBPFDatapath(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the kube-apiserver test bed")
	}
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (CAP_BPF and CAP_SYS_ADMIN to load programs and mount bpffs); run as root")
	}
	bpffs := t.TempDir()
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs at %s: %v", bpffs, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, 0) })
	pins := filepath.Join(bpffs, "clustermesh")
	useBPF := func(c *server.Config) { c.Datapath, c.BPFPinDir = "bpf", pins }

	kube := k8stest.Start(t)
	p := startPeerWithNode(t, "cluster7", 7)
	paths := p.Env.Paths
	p.Put(t, paths.Identity(7<<16+1), "k8s:app=x;k8s:io.cilium.k8s.policy.cluster=cluster7;")
	p.Put(t, paths.IPDefaultPrefix()+"10.7.1.5", `{"IP":"10.7.1.5","Mask":null,"HostIP":"192.168.7.1","ID":458753,"Key":0,"Metadata":""}`)
	p.Synced()
	pod := netip.MustParsePrefix("10.7.1.5/32")
	// What the kernel holds of the desired entry: identity and node, no
	// cluster name.
	want := bpfdp.KeptIPCache(datapath.IPCacheEntry{Identity: 7<<16 + 1, HostIP: netip.MustParseAddr("192.168.7.1"), Cluster: "cluster7"})

	// First agent: run by hand so that it can be stopped mid-test.
	meshDir := t.TempDir()
	p.WriteMeshFile(t, meshDir)
	sock := filepath.Join(t.TempDir(), "a.sock")
	if len(sock) > 100 {
		sock = filepath.Join(os.TempDir(), "cm-bpf-first.sock")
	}
	first, err := server.New(t.Context(), server.Config{NodeName: "node-bpf", ClusterName: "cluster1", ClusterID: 1,
		MeshConfigDir: meshDir, APISocket: sock, RestConfig: kube.Config, Datapath: "bpf", BPFPinDir: pins}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	eventually(t, "the peer's ip entry in the kernel ipcache", func() bool {
		got, err := first.Datapath.IPCache().List(t.Context())
		return err == nil && got[pod] == want
	})
	stop()
	<-done

	// The peer's etcd goes down; the next agent starts with it configured
	// but not ready: nothing of it is pruned, the pinned entry stays.
	p.Env.Stop()
	second := startAgent(t, kube, "node-bpf", func(b *agentBed) { b.connect(t, p) }, useBPF)
	second.waitAPI(t)
	// With --datapath=bpf the flows recorder runs (the CNI test drops real
	// packets and finds them there), its metrics with the agent's.
	var dr localapi.DropsResponse
	second.get(t, "/v1/drops", &dr)
	if dr.Drops == nil {
		t.Fatalf("GET /v1/drops with --datapath=bpf: %+v, want a list", dr)
	}
	var flowsBody string
	second.get(t, "/v1/flows", &flowsBody)
	if !strings.Contains(flowsBody, `{"status":{"node":"node-bpf"`) {
		t.Fatalf("GET /v1/flows with --datapath=bpf: %s, want the status line", flowsBody)
	}
	lintMetrics(t, second.agent.Registry)
	testutil.Consistently(t, time.Second, "pinned entry kept while the peer is not ready", func() bool {
		got, err := second.agent.Datapath.IPCache().List(t.Context())
		return err == nil && got[pod] == want
	})
	p.Env.Restart(t)
	eventually(t, "still programmed once the peer is ready again", func() bool {
		var st localapi.StatusResponse
		second.get(t, "/v1/status", &st)
		got, _ := second.agent.Datapath.IPCache().List(t.Context())
		return len(st.Peers) == 1 && st.Peers[0].Ready && got[pod] == want
	})

	// The kernel ipcache's size is in the status and its fill ratio in the
	// metrics.
	var st localapi.StatusResponse
	second.get(t, "/v1/status", &st)
	var ipcache *reconciler.Status
	for i := range st.Reconcilers {
		if st.Reconcilers[i].Name == "ipcache" {
			ipcache = &st.Reconcilers[i]
		}
	}
	if ipcache == nil || ipcache.Capacity != bpf.DefaultIPCacheMaxEntries || ipcache.Applied == 0 {
		t.Fatalf("ipcache reconciler status %+v, want capacity %d and entries", ipcache, bpf.DefaultIPCacheMaxEntries)
	}
	var metrics string
	second.get(t, "/metrics", &metrics)
	wantMetric := fmt.Sprintf(`clustermesh_agent_datapath_map_pressure{table="ipcache"} %g`, float64(ipcache.Applied)/bpf.DefaultIPCacheMaxEntries)
	if !strings.Contains(metrics, wantMetric) {
		t.Fatalf("/metrics lacks %s:\n%s", wantMetric, metrics)
	}
}
