package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/rest"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// BenchmarkAgentRemoteChurn runs the clustermesh-agent binary (in-memory
// datapath) connected to a peer with 100k ip entries, and measures what
// the agent process spends while the peer changes 1,000 entries per second
// for 10 s: CPU (cores, from its process_cpu_seconds_total) and bytes
// allocated per update (go_memstats_alloc_bytes_total), next to the same
// agent idle for 5 s in the same run (after 10 s for the initial sync's
// aftermath to settle). It then checks that the agent kept
// up: every changed entry holds its last value.
//
//	go test -run '^$' -bench BenchmarkAgentRemoteChurn -benchtime=1x ./agent/server
func BenchmarkAgentRemoteChurn(b *testing.B) {
	const (
		entries = 100_000
		rate    = 1000 // updates per second
		churn   = 10 * time.Second
		idle    = 5 * time.Second
		settle  = 10 * time.Second
		tail    = 2 * time.Second
	)
	kube := k8stest.Start(b)
	p := meshtest.StartPeer(b, "cluster2", 2)
	paths := p.Env.Paths
	// One node whose pod CIDRs hold every entry.
	p.Put(b, paths.Node("cluster2", "n1"), `{"Name":"n1","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.2.10"}],`+
		`"IPv4AllocCIDR":{"IP":"10.2.0.0","Mask":"//8AAA=="},"IPv4SecondaryAllocCIDRs":[{"IP":"10.3.0.0","Mask":"//8AAA=="}],"ClusterID":2}`)
	p.Put(b, paths.Identity(131073), "k8s:app=a;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=default;")
	p.Put(b, paths.Identity(131074), "k8s:app=b;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=default;")
	admin := p.Env.Connect(b, kvstore.AdminUser).Etcd()
	ip := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", 2+i>>16, i>>8&0xff, i&0xff) }
	value := func(i int, id uint32) string {
		return fmt.Sprintf(`{"IP":%q,"Mask":null,"HostIP":"192.168.2.10","ID":%d,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"pod-%d"}`, ip(i), id, i)
	}
	put := func(ctx context.Context, from, to int, id func(int) uint32) error {
		ops := make([]clientv3.Op, 0, to-from)
		for i := from; i < to; i++ {
			ops = append(ops, clientv3.OpPut(paths.IPDefaultPrefix()+ip(i), value(i, id(i))))
		}
		_, err := admin.Txn(ctx).Then(ops...).Commit()
		return err
	}
	for lo := 0; lo < entries; lo += 128 {
		if err := put(b.Context(), lo, min(lo+128, entries), func(int) uint32 { return 131073 }); err != nil {
			b.Fatal(err)
		}
	}
	p.Synced()

	bin := buildAgent(b)
	dir := b.TempDir()
	kubeconfig, meshDir := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "mesh")
	if err := k8stest.WriteKubeconfig(kubeconfig, map[string]*rest.Config{"kube": kube.Config}, "kube"); err != nil {
		b.Fatal(err)
	}
	if err := os.Mkdir(meshDir, 0o700); err != nil {
		b.Fatal(err)
	}
	p.WriteMeshFile(b, meshDir)
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("cm-churn-%d.sock", os.Getpid()))
	cmd := exec.Command(bin, "--node-name=n1", "--cluster-name=cluster1", "--cluster-id=1", "--datapath=none",
		"--kubeconfig="+kubeconfig, "--mesh-config-dir="+meshDir, "--api-socket="+sock, "--health-addr=", "--metrics-addr=")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.Remove(sock) })
	api := newUnixClient(sock)

	start := time.Now()
	for {
		var st localapi.StatusResponse
		if err := api.getJSON("/v1/status", &st); err == nil && len(st.Peers) == 1 && st.Peers[0].Ready && appliedOf(st, "ipcache") >= entries {
			break
		}
		if time.Since(start) > 3*time.Minute {
			b.Fatal("the agent did not apply the peer's 100k entries within 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("initial sync of %d entries applied in %v", entries, time.Since(start).Round(time.Millisecond))

	// Let the work that follows the initial sync (the first full passes,
	// the garbage collection of the sync's allocations) settle first.
	time.Sleep(settle)
	cpu0, alloc0 := api.cost(b)
	time.Sleep(idle)
	cpu1, alloc1 := api.cost(b)
	idleCores := (cpu1 - cpu0) / idle.Seconds()

	// 1,000 updates per second, 10 per 10 ms, each flipping an entry's
	// identity; entries 0..n-1 in order.
	final := map[int]uint32{}
	n := 0
	tick := time.NewTicker(10 * time.Millisecond)
	churnStart := time.Now()
	for time.Since(churnStart) < churn {
		<-tick.C
		from := n % entries
		to := min(from+rate/100, entries)
		id := func(i int) uint32 { return 131073 + uint32((n/entries+1)%2) }
		if err := put(b.Context(), from, to, id); err != nil {
			b.Fatal(err)
		}
		for i := from; i < to; i++ {
			final[i] = id(i)
		}
		n += to - from
	}
	tick.Stop()
	wrote := time.Since(churnStart)
	// The cost window closes a fixed time after the last write, without
	// reading the agent's ipcache inside it (a read of 100k entries costs
	// the agent more than the tail of the churn); whether it kept up is
	// checked afterwards.
	time.Sleep(tail)
	cpu2, alloc2 := api.cost(b)
	window := time.Since(churnStart).Seconds()
	var lag time.Duration
	for {
		if keptUp(b, api, final) {
			lag = time.Since(churnStart) - wrote
			break
		}
		if time.Since(churnStart) > wrote+30*time.Second {
			b.Fatal("the agent had not applied the churn 30 s after the last write")
		}
		time.Sleep(200 * time.Millisecond)
	}
	cores := (cpu2 - cpu1) / window
	perUpdate := (alloc2 - alloc1) / float64(n)
	b.ReportMetric(cores, "cores")
	b.ReportMetric(perUpdate, "B/update")
	b.ReportMetric(float64(n)/wrote.Seconds(), "updates/s")
	b.Logf("%d updates at %.0f/s over %v (+%v): agent CPU %.3f cores (idle %.3f), %.0f B allocated per update (idle %.0f B/s); all applied within %v of the last write (checked by reading /v1/ipcache every 200 ms after the window)",
		n, float64(n)/wrote.Seconds(), wrote.Round(time.Millisecond), tail, cores, idleCores, perUpdate, (alloc1-alloc0)/idle.Seconds(), lag.Round(time.Millisecond))
}

func appliedOf(st localapi.StatusResponse, name string) int {
	for _, r := range st.Reconcilers {
		if r.Name == name {
			return r.Applied
		}
	}
	return 0
}

// keptUp reports whether the agent's ipcache holds the final identity of
// every changed entry.
func keptUp(b *testing.B, api unixClient, final map[int]uint32) bool {
	b.Helper()
	var entries []localapi.PrefixEntry
	if err := api.getJSON("/v1/ipcache", &entries); err != nil {
		b.Fatal(err)
	}
	got := make(map[string]uint32, len(entries))
	for _, e := range entries {
		got[e.Prefix] = e.Identity
	}
	for i, id := range final {
		if got[fmt.Sprintf("10.%d.%d.%d/32", 2+i>>16, i>>8&0xff, i&0xff)] != id {
			return false
		}
	}
	return true
}

// unixClient talks to the agent's API socket.
type unixClient struct{ c *http.Client }

func newUnixClient(sock string) unixClient {
	return unixClient{&http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}}
}

func (u unixClient) get(path string) ([]byte, error) {
	resp, err := u.c.Get("http://agent" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

func (u unixClient) getJSON(path string, into any) error {
	body, err := u.get(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, into)
}

// cost returns the agent's CPU seconds and allocated bytes so far.
func (u unixClient) cost(b *testing.B) (cpu, alloc float64) {
	b.Helper()
	body, err := u.get("/metrics")
	if err != nil {
		b.Fatal(err)
	}
	found := 0
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "process_cpu_seconds_total":
			cpu, err = strconv.ParseFloat(v, 64)
			found++
		case "go_memstats_alloc_bytes_total":
			alloc, err = strconv.ParseFloat(v, 64)
			found++
		}
		if err != nil {
			b.Fatalf("metric %s: %v", name, err)
		}
	}
	if found != 2 {
		b.Fatal("the agent's /metrics lacks process_cpu_seconds_total or go_memstats_alloc_bytes_total")
	}
	return cpu, alloc
}

// buildAgent builds the clustermesh-agent binary into a temporary
// directory.
func buildAgent(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/clustermesh/clustermesh/cmd/clustermesh-agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build clustermesh-agent: %v\n%s", err, out)
	}
	return filepath.Join(dir, "clustermesh-agent")
}
