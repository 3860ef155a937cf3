package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore"
)

type patcher[T any] interface {
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (T, error)
}

func patch[T any](t *testing.T, c patcher[T], name, body string) {
	t.Helper()
	if _, err := c.Patch(t.Context(), name, types.MergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch %s: %v", name, err)
	}
}

// ipID returns the identity of an ip entry's JSON ("" if absent).
func ipID(t *testing.T, value string) string {
	t.Helper()
	if value == "" {
		return ""
	}
	var e struct{ ID uint32 }
	if err := json.Unmarshal([]byte(value), &e); err != nil {
		t.Fatalf("ip entry %q: %v", value, err)
	}
	return strconv.FormatUint(uint64(e.ID), 10)
}

func modRev(t *testing.T, b *bed, key string) int64 {
	t.Helper()
	resp, err := b.admin.Etcd().Get(t.Context(), key)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("get %s: %v", key, err)
	}
	return resp.Kvs[0].ModRevision
}

var httpPort = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}

// The exact keys and values a peer (ours or Cilium's) reads.
func TestExportsNodesIdentitiesIPsAndServices(t *testing.T) {
	b := newBed(t, nil)
	b.createNode(t, "n1", "192.168.1.10", "10.1.1.0/24")
	b.createPod(t, "default", "x-wing", map[string]string{"app": "x-wing", "pod-template-hash": "abc"}, "10.1.1.5", "192.168.1.10")
	svc := b.createService(t, "default", "rebel-base", map[string]string{"service.cilium.io/global": "true"}, httpPort)
	b.createSlice(t, "default", "rebel-base", map[string]bool{"10.1.1.5": true, "10.1.1.6": false}, 8080)
	b.createService(t, "default", "local-only", nil, httpPort)
	b.waitSynced(t)

	p := b.paths
	wantNode := `{"Name":"n1","Cluster":"cluster1","IPAddresses":[{"Type":"InternalIP","IP":"192.168.1.10"}],` +
		`"IPv4AllocCIDR":{"IP":"10.1.1.0","Mask":"////AA=="},"IPv4SecondaryAllocCIDRs":null,"IPv6AllocCIDR":null,"IPv6SecondaryAllocCIDRs":null,` +
		`"IPv4HealthIP":"","IPv6HealthIP":"","IPv4IngressIP":"","IPv6IngressIP":"","ClusterID":1,"Source":"custom-resource","EncryptionKey":0,` +
		`"Labels":{"kubernetes.io/hostname":"n1"},"Annotations":null,` +
		`"WireguardPubKey":"dGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciB0ZXN0cyE=","BootID":"boot-n1"}`
	b.waitValue(t, p.Node("cluster1", "n1"), wantNode)

	// The objects were created after the apiserver started: wait for each.
	wantIP := `{"IP":"10.1.1.5","Mask":null,"HostIP":"192.168.1.10","ID":65537,"Key":0,"Metadata":"",` +
		`"K8sNamespace":"default","K8sPodName":"x-wing","K8sServiceAccount":"pilot","NamedPorts":[{"Name":"http","Port":8080,"Protocol":"TCP"}]}`
	b.waitValue(t, p.IPDefaultPrefix()+"10.1.1.5", wantIP)
	wantLabels := "k8s:app=x-wing;k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default;" +
		"k8s:io.cilium.k8s.policy.cluster=cluster1;k8s:io.cilium.k8s.policy.serviceaccount=pilot;k8s:io.kubernetes.pod.namespace=default;"
	b.waitValue(t, p.Identity(65537), wantLabels)
	ids, err := cmv1.ListIdentities(t.Context(), mustRC(t, b))
	if err != nil || len(ids.Items) != 1 || ids.Items[0].Name != "65537" {
		t.Fatalf("identities = %+v, %v; want exactly 65537 (cluster 1's first)", ids, err)
	}
	wantSvc := `{"cluster":"cluster1","namespace":"default","name":"rebel-base",` +
		`"frontends":{"` + svc.Spec.ClusterIP + `":{"http":{"Protocol":"TCP","Port":80}}},` +
		`"backends":{"10.1.1.5":{"http":{"Protocol":"TCP","Port":8080}}},` +
		`"labels":{"app":"rebel-base"},"selector":{"app":"rebel-base"},"includeExternal":true,"shared":true,"clusterID":1}`
	b.waitValue(t, p.Service("cluster1", "default", "rebel-base"), wantSvc)
	if got := b.list(t, p.ClusterServicesPrefix("cluster1")); len(got) != 1 {
		t.Errorf("services exported: %v, want only the global one", got)
	}
	if got := b.get(t, p.ClusterConfig("cluster1")); got != `{"id":1,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}` {
		t.Errorf("cluster config %s", got)
	}
	if b.get(t, p.Heartbeat()) == "" {
		t.Error("no heartbeat")
	}
}

func mustRC(t *testing.T, b *bed) *rest.RESTClient {
	t.Helper()
	rc, err := cmv1.NewRESTClient(b.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// Changes in Kubernetes reach etcd: deletion, non-global, non-shared, and a
// label change that moves a pod to another identity.
func TestExportFollowsChanges(t *testing.T) {
	b := newBed(t, func(c *server.Config) { c.IdentityGCGrace = time.Second })
	cs := b.kube.Client
	b.createPod(t, "default", "x-wing", map[string]string{"app": "x-wing"}, "10.1.1.5", "192.168.1.10")
	b.createService(t, "default", "rebel-base", map[string]string{"io.cilium/global-service": "true"}, httpPort)
	b.createService(t, "default", "echo", map[string]string{"service.cilium.io/global": "true"}, httpPort)
	b.waitSynced(t)
	p := b.paths
	ipKey := p.IPDefaultPrefix() + "10.1.1.5"
	eventually(t, "both services exported", func() bool { return len(b.list(t, p.ClusterServicesPrefix("cluster1"))) == 2 })

	// global=false and shared=false both withdraw a service.
	patch(t, cs.CoreV1().Services("default"), "rebel-base", `{"metadata":{"annotations":{"io.cilium/global-service":"false"}}}`)
	patch(t, cs.CoreV1().Services("default"), "echo", `{"metadata":{"annotations":{"service.cilium.io/shared":"false"}}}`)
	eventually(t, "services withdrawn", func() bool { return len(b.list(t, p.ClusterServicesPrefix("cluster1"))) == 0 })

	// A label change moves the pod to a new identity; the old one is
	// collected after the grace period.
	old := ipID(t, b.get(t, ipKey))
	patch(t, cs.CoreV1().Pods("default"), "x-wing", `{"metadata":{"labels":{"app":"y-wing"}}}`)
	var moved string
	eventually(t, "ip entry moved to a new identity", func() bool {
		moved = ipID(t, b.get(t, ipKey))
		return moved != "" && moved != old
	})
	// Identities and ip entries are separate prefixes: the identity key may
	// land just after the ip entry that names it.
	eventually(t, "new identity "+moved+" exported with the new labels", func() bool {
		return strings.Contains(b.get(t, p.IdentityIDPrefix()+moved), "k8s:app=y-wing;")
	})
	eventually(t, "old identity collected", func() bool { return b.get(t, p.IdentityIDPrefix()+old) == "" })

	if err := cs.CoreV1().Pods("default").Delete(t.Context(), "x-wing", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ip entry removed with the pod", func() bool { return b.get(t, ipKey) == "" })
}

// Markers appear only after the initial export, the cluster config comes
// back after deletion, and a restart on an empty etcd exports everything
// again.
func TestMarkersConfigAndRestartWithEmptyEtcd(t *testing.T) {
	// The pods exist before the apiserver starts: they are the initial
	// export the markers vouch for.
	b := newStoppedBed(t, nil)
	for i := range 20 {
		b.createPod(t, "default", "pod"+strconv.Itoa(i), map[string]string{"app": "a" + strconv.Itoa(i%5)}, "10.1.1."+strconv.Itoa(10+i), "192.168.1.10")
	}
	b.start(t)
	b.admin = b.client(t, kvstore.AdminUser)
	b.waitSynced(t)
	before := b.list(t, "cilium/state/")
	if n := len(b.list(t, b.paths.IPDefaultPrefix())); n != 20 {
		t.Fatalf("ip entries after sync = %d, want 20", n)
	}
	markerRev := modRev(t, b, b.paths.Synced("cluster1", b.paths.IPPrefix()))
	for k := range b.list(t, b.paths.IPDefaultPrefix()) {
		if r := modRev(t, b, k); r > markerRev {
			t.Fatalf("%s written at revision %d, after the ip synced marker (%d)", k, r, markerRev)
		}
	}

	cfgKey := b.paths.ClusterConfig("cluster1")
	want := b.get(t, cfgKey)
	if _, err := b.admin.Etcd().Delete(t.Context(), cfgKey); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cluster config re-created", func() bool { return b.get(t, cfgKey) == want })

	b.stopApiserver()
	if err := os.RemoveAll(b.cfg.EtcdDataDir); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	b.admin = b.client(t, kvstore.AdminUser)
	b.waitSynced(t)
	if diff := cmp.Diff(before, b.list(t, "cilium/state/")); diff != "" {
		t.Fatalf("state after restart on an empty etcd (-before +after):\n%s", diff)
	}
}

// A remote agent's read-only user reads the state and cannot write.
func TestRemoteUserIsReadOnly(t *testing.T) {
	b := newBed(t, nil)
	b.createPod(t, "default", "x-wing", map[string]string{"app": "x-wing"}, "10.1.1.5", "192.168.1.10")
	b.waitSynced(t)
	eventually(t, "pod exported", func() bool { return b.get(t, b.paths.IPDefaultPrefix()+"10.1.1.5") != "" })
	remote := b.client(t, kvstore.RemoteUser).Etcd()
	resp, err := remote.Get(t.Context(), "cilium/state/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count < 2 {
		t.Fatalf("remote read of the state: count %v, err %v", resp, err)
	}
	if _, err := remote.Put(t.Context(), b.paths.IPDefaultPrefix()+"10.1.1.99", "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("remote write: err = %v, want permission denied", err)
	}
}

// An identity deleted while its pods run is allocated again and the pods'
// ip entries follow it.
func TestDeletedIdentityInUseIsAllocatedAgain(t *testing.T) {
	b := newBed(t, nil)
	b.createPod(t, "default", "x-wing", map[string]string{"app": "x-wing"}, "10.1.1.5", "192.168.1.10")
	b.waitSynced(t)
	ipKey := b.paths.IPDefaultPrefix() + "10.1.1.5"
	old := ipID(t, b.get(t, ipKey))
	id, _ := strconv.ParseUint(old, 10, 32)
	if err := cmv1.DeleteIdentity(t.Context(), mustRC(t, b), identity.NumericIdentity(id)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "identity allocated again and the ip entry moved", func() bool {
		now := ipID(t, b.get(t, ipKey))
		return now != "" && now != old && b.get(t, b.paths.IdentityIDPrefix()+now) != ""
	})
	eventually(t, "the deleted identity withdrawn from etcd", func() bool { return b.get(t, b.paths.IdentityIDPrefix()+old) == "" })
}
