package server_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/internal/k8sconv"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
)

// With --enable-wireguard the agent publishes its public key on its Node
// and makes every other node with a key a WireGuard peer routing its pod
// CIDR; the device lives in a network namespace of the test.
func TestAgentWireGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the kube-apiserver test bed")
	}
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (CAP_NET_ADMIN for network namespaces, TUN and WireGuard); run as root")
	}
	ns := fmt.Sprintf("cm-wg-agent-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })

	kube := k8stest.Start(t)
	kube.CreateNode(t, "node-wg", "192.168.1.30", "10.1.30.0/24")
	peerKey, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := startPeerWithNode(t, "cluster9", 9)
	p.Put(t, p.Env.Paths.Node("cluster9", "n2"), fmt.Sprintf(`{"Name":"n2","Cluster":"cluster9","IPAddresses":[{"Type":"InternalIP","IP":"192.168.9.2"}],`+
		`"IPv4AllocCIDR":{"IP":"10.9.2.0","Mask":"////AA=="},"ClusterID":9,"WireguardPubKey":%q}`, peerKey.PublicKey().String()))
	p.Synced()
	keyFile := filepath.Join(t.TempDir(), "wg.key")
	b := startAgent(t, kube, "node-wg", func(b *agentBed) { b.connect(t, p) }, func(c *server.Config) {
		c.WireGuard, c.WireGuardKeyFile, c.WireGuardNetNS = true, keyFile, "/var/run/netns/"+ns
		c.WireGuardDevice = fmt.Sprintf("cmwg%d", os.Getpid()%100000)
	})
	eventually(t, "the node's WireGuard public key on its Node", func() bool {
		n, err := kube.Client.CoreV1().Nodes().Get(t.Context(), "node-wg", metav1.GetOptions{})
		if err != nil {
			return false
		}
		_, err = wgtypes.ParseKey(n.Annotations[k8sconv.WireguardPubKeyAnnotation])
		return err == nil
	})
	eventually(t, "the peer's node with a key is a WireGuard peer", func() bool {
		got, err := b.agent.Datapath.Peers().List(t.Context())
		pe, ok := got["cluster9/n2"]
		return err == nil && ok && pe.WireguardPubKey == peerKey.PublicKey().String() && len(pe.PodCIDRs) == 1 &&
			pe.PodCIDRs[0].String() == "10.9.2.0/24"
	})
	var st localapi.StatusResponse
	b.get(t, "/v1/status", &st)
	for _, r := range st.Reconcilers {
		if r.Name == "peers" && r.Failing != 1 { // cluster9/n1 has no WireGuard key: refused and retried
			t.Errorf("peers reconciler %+v: want exactly the node without a key failing", r)
		}
	}
}
