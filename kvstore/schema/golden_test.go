package schema

import (
	"net"
	"testing"
)

// The golden strings below are what Cilium's encoding/json writes for the
// corresponding Cilium types (pkg/node/types.Node, identity.IPIdentityPair,
// clustermesh/store.ClusterService, clustermesh/types.CiliumClusterConfig).

func goldenNode(t testing.TB) Node {
	return Node{
		Name:    "n1",
		Cluster: "c1",
		IPAddresses: []NodeAddress{
			{Type: AddressInternalIP, IP: net.ParseIP("172.18.0.3")},
			{Type: AddressCiliumInternalIP, IP: net.ParseIP("10.1.1.196")},
			{Type: AddressInternalIP, IP: net.ParseIP("fc00:c111::3")},
		},
		IPv4AllocCIDR:           mustCIDR(t, "10.1.1.0/24"),
		IPv4SecondaryAllocCIDRs: []*CIDR{mustCIDR(t, "10.2.0.0/16")},
		IPv6AllocCIDR:           mustCIDR(t, "fd00:10:1:1::/64"),
		IPv4HealthIP:            net.ParseIP("10.1.1.104"),
		IPv4IngressIP:           net.ParseIP("10.1.1.5"),
		ClusterID:               1,
		Source:                  "local",
		EncryptionKey:           3,
		Labels:                  map[string]string{"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux"},
		WireguardPubKey:         "dGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciB0ZXN0cyE=",
		BootID:                  "6d1f8c2e-1b0a-4c8e-9d7a-1f2e3d4c5b6a",
	}
}

const goldenNodeJSON = `{"Name":"n1","Cluster":"c1",` +
	`"IPAddresses":[{"Type":"InternalIP","IP":"172.18.0.3"},{"Type":"CiliumInternalIP","IP":"10.1.1.196"},{"Type":"InternalIP","IP":"fc00:c111::3"}],` +
	`"IPv4AllocCIDR":{"IP":"10.1.1.0","Mask":"////AA=="},` +
	`"IPv4SecondaryAllocCIDRs":[{"IP":"10.2.0.0","Mask":"//8AAA=="}],` +
	`"IPv6AllocCIDR":{"IP":"fd00:10:1:1::","Mask":"//////////8AAAAAAAAAAA=="},` +
	`"IPv6SecondaryAllocCIDRs":null,` +
	`"IPv4HealthIP":"10.1.1.104","IPv6HealthIP":"","IPv4IngressIP":"10.1.1.5","IPv6IngressIP":"",` +
	`"ClusterID":1,"Source":"local","EncryptionKey":3,` +
	`"Labels":{"kubernetes.io/hostname":"n1","kubernetes.io/os":"linux"},"Annotations":null,` +
	`"WireguardPubKey":"dGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciB0ZXN0cyE=",` +
	`"BootID":"6d1f8c2e-1b0a-4c8e-9d7a-1f2e3d4c5b6a"}`

func goldenIPEntry() IPEntry {
	return IPEntry{
		IP:                net.ParseIP("10.6.6.43"),
		HostIP:            net.ParseIP("10.5.1.132"),
		ID:                12928,
		Metadata:          "cilium-global:default:k8s-node1:432",
		K8sNamespace:      "istio-system",
		K8sPodName:        "ai-ingressgateway-6bdbdbf7dc-jz85c",
		K8sServiceAccount: "ingress",
		NamedPorts:        []NamedPort{{Name: "http", Port: 8080, Protocol: ProtocolTCP}},
	}
}

const goldenIPEntryJSON = `{"IP":"10.6.6.43","Mask":null,"HostIP":"10.5.1.132","ID":12928,"Key":0,` +
	`"Metadata":"cilium-global:default:k8s-node1:432","K8sNamespace":"istio-system",` +
	`"K8sPodName":"ai-ingressgateway-6bdbdbf7dc-jz85c","K8sServiceAccount":"ingress",` +
	`"NamedPorts":[{"Name":"http","Port":8080,"Protocol":"TCP"}]}`

func goldenService() ClusterService {
	return ClusterService{
		Cluster:   "c1",
		Namespace: "default",
		Name:      "echo",
		Frontends: map[string]PortConfiguration{
			"10.96.0.10": {"http": {Protocol: ProtocolTCP, Port: 80}},
			"fd00::a":    {"http": {Protocol: ProtocolTCP, Port: 80}},
		},
		Backends: map[string]PortConfiguration{
			"10.1.1.7": {"http": {Protocol: ProtocolTCP, Port: 8080}, "dns": {Protocol: ProtocolUDP, Port: 53}},
		},
		Hostnames: map[string]string{"10.1.1.7": "echo-0"},
		Labels:    map[string]string{"app": "echo"},
		Selector:  map[string]string{"app": "echo"},
		Shared:    true,
		ClusterID: 1,
	}
}

const goldenServiceJSON = `{"cluster":"c1","namespace":"default","name":"echo",` +
	`"frontends":{"10.96.0.10":{"http":{"Protocol":"TCP","Port":80}},"fd00::a":{"http":{"Protocol":"TCP","Port":80}}},` +
	`"backends":{"10.1.1.7":{"dns":{"Protocol":"UDP","Port":53},"http":{"Protocol":"TCP","Port":8080}}},` +
	`"hostnames":{"10.1.1.7":"echo-0"},"labels":{"app":"echo"},"selector":{"app":"echo"},` +
	`"includeExternal":false,"shared":true,"clusterID":1}`

func TestGolden(t *testing.T) {
	p := DefaultPaths()
	no := false
	tests := []struct {
		name   string
		key    string
		value  interface{ Marshal() ([]byte, error) }
		want   string
		decode func(key string, data []byte) (any, error)
	}{
		{"node", p.Node("c1", "n1"), goldenNode(t), goldenNodeJSON,
			func(k string, d []byte) (any, error) { return DecodeNode(k, d) }},
		{"ip entry", p.IP(mustAddr("10.6.6.43")), goldenIPEntry(), goldenIPEntryJSON,
			func(k string, d []byte) (any, error) { return DecodeIPEntry(k, d) }},
		{"ip prefix entry", "cilium/state/ip/v1/default/10.0.0.0/24",
			IPEntry{IP: net.ParseIP("10.0.0.0"), Mask: net.CIDRMask(24, 32), ID: 16777215},
			`{"IP":"10.0.0.0","Mask":"////AA==","HostIP":"","ID":16777215,"Key":0,"Metadata":""}`,
			func(k string, d []byte) (any, error) { return DecodeIPEntry(k, d) }},
		{"service", p.Service("c1", "default", "echo"), goldenService(), goldenServiceJSON,
			func(k string, d []byte) (any, error) { return DecodeClusterService(k, d) }},
		{"service without hostnames", p.Service("c2", "ns", "headless"),
			ClusterService{Cluster: "c2", Namespace: "ns", Name: "headless", ClusterID: 511},
			`{"cluster":"c2","namespace":"ns","name":"headless","frontends":null,"backends":null,` +
				`"labels":null,"selector":null,"includeExternal":false,"shared":false,"clusterID":511}`,
			func(k string, d []byte) (any, error) { return DecodeClusterService(k, d) }},
		{"cluster config", p.ClusterConfig("c1"),
			ClusterConfig{ID: 1, Capabilities: ClusterConfigCapabilities{SyncedCanaries: true, MaxConnectedClusters: 255}},
			`{"id":1,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`,
			func(k string, d []byte) (any, error) { return DecodeClusterConfig(k, d) }},
		{"cluster config all capabilities", p.ClusterConfig("c1"),
			ClusterConfig{ID: 300, Capabilities: ClusterConfigCapabilities{
				SyncedCanaries: true, Cached: true, MaxConnectedClusters: 511, ServiceExportsEnabled: &no,
				EndpointSlicesExportMode: EndpointSlicesExportModeServicesAndEndpointSlices}},
			`{"id":300,"capabilities":{"syncedCanaries":true,"cached":true,"maxConnectedClusters":511,"serviceExportsEnabled":false,"endpointSlicesExportMode":"services-and-endpointslices"}}`,
			func(k string, d []byte) (any, error) { return DecodeClusterConfig(k, d) }},
		{"legacy cluster config", p.ClusterConfig("c1"), ClusterConfig{ID: 3}, `{"id":3,"capabilities":{}}`,
			func(k string, d []byte) (any, error) { return DecodeClusterConfig(k, d) }},
		{"identity", p.Identity(65537),
			IdentityValue{ID: 65537, Labels: "k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;"},
			"k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;",
			func(k string, d []byte) (any, error) { return DecodeIdentity(k, d) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.value.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal:\n got %s\nwant %s", got, tt.want)
			}
			back, err := tt.decode(tt.key, []byte(tt.want))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			checkEqual(t, "decode(golden)", back, tt.value)
		})
	}
}

// TestDecodeOlderCilium decodes a node as written by an older Cilium (no
// secondary CIDRs, ingress IPs, labels, annotations or boot ID).
func TestDecodeOlderCilium(t *testing.T) {
	key := "cilium/state/nodes/v1/default/k8s-node1"
	data := `{
	  "Name":"k8s-node1",
	  "Cluster":"default",
	  "IPAddresses":[{"Type":"InternalIP", "IP":"10.5.1.132"},
	                 {"Type":"CiliumInternalIP", "IP":"10.6.6.71"}],
	  "IPv4AllocCIDR":{"IP":"10.6.6.0", "Mask":"////AA=="},
	  "IPv6AllocCIDR":null,
	  "IPv4HealthIP":"10.6.6.79",
	  "IPv6HealthIP":"",
	  "ClusterID":0,
	  "Source":"local",
	  "EncryptionKey":0
	}`
	n, err := DecodeNode(key, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := Node{
		Name: "k8s-node1", Cluster: "default",
		IPAddresses: []NodeAddress{
			{Type: AddressInternalIP, IP: net.ParseIP("10.5.1.132")},
			{Type: AddressCiliumInternalIP, IP: net.ParseIP("10.6.6.71")},
		},
		IPv4AllocCIDR: mustCIDR(t, "10.6.6.0/24"),
		IPv4HealthIP:  net.ParseIP("10.6.6.79"),
		Source:        "local",
	}
	checkEqual(t, "decoded node", n, want)
	if got := n.InternalIP(false); got != mustAddr("10.5.1.132") {
		t.Errorf("InternalIP(false) = %v", got)
	}
	if got := n.InternalIP(true); got.IsValid() {
		t.Errorf("InternalIP(true) = %v, want none", got)
	}
	if got := n.CiliumInternalIP(false); got != mustAddr("10.6.6.71") {
		t.Errorf("CiliumInternalIP(false) = %v", got)
	}
}

func TestNodePodCIDRs(t *testing.T) {
	n := goldenNode(t)
	n.IPv6SecondaryAllocCIDRs = []*CIDR{mustCIDR(t, "fd00:20::/64")}
	got := n.PodCIDRs()
	want := []string{"10.1.1.0/24", "fd00:10:1:1::/64", "10.2.0.0/16", "fd00:20::/64"}
	if len(got) != len(want) {
		t.Fatalf("PodCIDRs() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("PodCIDRs()[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}
