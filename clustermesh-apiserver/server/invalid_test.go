package server_test

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/internal/version"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// Bad input on one object becomes an Event on that object, and the rest of
// the export goes on.
func TestInvalidInputBecomesEvents(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t))
	b := newBed(t, func(c *server.Config) { c.HealthAddr, c.MetricsAddr = addr, addr })
	b.createService(t, "default", "yes-global", map[string]string{"service.cilium.io/global": "yes"}, httpPort)
	b.createService(t, "default", "odd-affinity", map[string]string{"service.cilium.io/global": "true", "service.cilium.io/affinity": "nearby"}, httpPort)
	// (An unnamed port on a multi-port service never gets here: the
	// kube-apiserver refuses it; the services package's tests cover it.)
	b.createNode(t, "bad-key", "192.168.1.11", "10.1.2.0/24")
	patch(t, b.kube.Client.CoreV1().Nodes(), "bad-key", `{"metadata":{"annotations":{"network.cilium.io/wg-pub-key":"not-a-key"}}}`)
	b.createPod(t, "default", "no-ip", map[string]string{"app": "x"}, "", "")
	b.createPod(t, "default", "fine", map[string]string{"app": "y"}, "10.1.1.7", "192.168.1.10")
	b.waitSynced(t)

	want := []struct{ kind, name, reason, text string }{
		{"Service", "yes-global", "InvalidAnnotation", `"yes"`},
		{"Service", "odd-affinity", "InvalidAnnotation", `"nearby"`},
		{"Node", "bad-key", "InvalidNode", "WireGuard public key"},
		{"Pod", "no-ip", "PodWithoutIP", "no IP"},
	}
	for _, w := range want {
		eventually(t, w.reason+" event on "+w.name, func() bool {
			ns := "default"
			if w.kind == "Node" {
				ns = metav1.NamespaceDefault // node events are recorded in the default namespace
			}
			evs, err := b.kube.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{
				FieldSelector: fields.Set{"involvedObject.name": w.name, "involvedObject.kind": w.kind}.String(),
			})
			if err != nil {
				return false
			}
			for _, e := range evs.Items {
				if e.Reason == w.reason && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, w.text) {
					return true
				}
			}
			return false
		})
	}
	p := b.paths
	// The rest goes on: the valid pod and the valid parts of services.
	eventually(t, "the valid pod exported next to invalid ones", func() bool { return b.get(t, p.IPDefaultPrefix()+"10.1.1.7") != "" })
	eventually(t, "a global service with an unknown affinity exported (affinity falls back to none)", func() bool {
		return b.get(t, p.Service("cluster1", "default", "odd-affinity")) != ""
	})
	eventually(t, "node exported without the bad key", func() bool {
		got := b.get(t, p.Node("cluster1", "bad-key"))
		return strings.Contains(got, `"WireguardPubKey":""`) && strings.Contains(got, "10.1.2.0")
	})
	if got := b.get(t, p.Service("cluster1", "default", "yes-global")); got != "" {
		t.Errorf("a service with global=yes was exported: %s", got)
	}

	// The metric counts them; readiness follows the synced markers.
	metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`clustermesh_apiserver_invalid_objects_total{kind="service",reason="InvalidAnnotation"} 2`,
		`clustermesh_apiserver_invalid_objects_total{kind="pod",reason="PodWithoutIP"} 1`,
		`clustermesh_apiserver_invalid_objects_total{kind="node",reason="InvalidNode"} 1`,
		`clustermesh_build_info{bpf_objects="",commit="` + version.Get().Commit + `",go_version="` + runtime.Version() + `",version="` + version.Get().Version + `"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	if body := httpGet(t, "http://"+addr+"/readyz"); !strings.Contains(body, `"Synced":true`) {
		t.Errorf("/readyz: %s", body)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}
