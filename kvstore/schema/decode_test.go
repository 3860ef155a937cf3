package schema

import (
	"strings"
	"testing"
)

type rejectCase struct {
	name      string
	key       string
	data      string
	fragments []string
}

func runRejections(t *testing.T, decode func(key string, data []byte) error, cases []rejectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkMalformed(t, decode(tc.key, []byte(tc.data)), tc.key, tc.fragments...)
		})
	}
}

// commonRejections are invalid for every JSON value.
func commonRejections(key string) []rejectCase {
	return []rejectCase{
		{"empty", key, "", []string{"empty"}},
		{"whitespace", key, " \n\t", []string{"empty"}},
		{"null", key, "null", []string{"value is null"}},
		{"array", key, `[{"Name":"n1"}]`, []string{"an array"}},
		{"string", key, `"x"`, []string{"a string"}},
		{"number", key, `12`, []string{"a number"}},
		{"boolean", key, `true`, []string{"a boolean"}},
		{"garbage", key, `<xml/>`, []string{"not JSON"}},
		{"truncated", key, `{"a":`, []string{"unexpected end of JSON input"}},
		{"trailing garbage", key, `{} x`, []string{"after top-level value"}},
		{"two objects", key, `{}{}`, []string{"after top-level value"}},
	}
}

func TestDecodeNodeRejects(t *testing.T) {
	key := "cilium/state/nodes/v1/c1/n1"
	obj := func(fields string) string { return `{"Name":"n1","Cluster":"c1"` + fields + `}` }
	cases := append(commonRejections(key), []rejectCase{
		{"bad key", "cilium/state/nodes/v1/c1", obj(""), []string{"invalid etcd key", "segment"}},
		{"mismatched name", key, `{"Name":"n2","Cluster":"c1"}`, []string{`node name "n2" does not match the key's node "n1"`}},
		{"empty name", key, `{"Cluster":"c1"}`, []string{"node name is empty"}},
		{"mismatched cluster", key, `{"Name":"n1","Cluster":"c2"}`, []string{`node cluster "c2" does not match the key's cluster "c1"`}},
		{"missing cluster", key, `{"Name":"n1"}`, []string{`node cluster ""`}},
		{"bad IP", key, obj(`,"IPAddresses":[{"Type":"InternalIP","IP":"10.0.0.300"}]`), []string{"10.0.0.300"}},
		{"empty IP", key, obj(`,"IPAddresses":[{"Type":"InternalIP","IP":""}]`), []string{"node address 0 (InternalIP) has no valid IP"}},
		{"missing type", key, obj(`,"IPAddresses":[{"IP":"10.0.0.1"}]`), []string{"node address 0 has no Type"}},
		{"CIDR as string", key, obj(`,"IPv4AllocCIDR":"10.0.0.0/24"`), []string{"invalid CIDR", "want an object"}},
		{"CIDR short mask", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0.0","Mask":"////"}`), []string{"mask has 3 bytes, want 4"}},
		{"CIDR v6 mask on v4", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0.0","Mask":"/////////////////////w=="}`), []string{"mask has 16 bytes, want 4"}},
		{"CIDR non-contiguous mask", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0.0","Mask":"/wD/AA=="}`), []string{"not a prefix mask"}},
		{"CIDR host bits", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0.5","Mask":"////AA=="}`), []string{"10.0.0.5 has bits set outside the /24 mask"}},
		{"CIDR missing mask", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0.0"}`), []string{"missing Mask"}},
		{"CIDR missing IP", key, obj(`,"IPv4AllocCIDR":{"Mask":"////AA=="}`), []string{"missing IP"}},
		{"CIDR bad IP", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0","Mask":"////AA=="}`), []string{"10.0.0"}},
		{"CIDR bad base64", key, obj(`,"IPv4AllocCIDR":{"IP":"10.0.0.0","Mask":"!!"}`), []string{"invalid CIDR"}},
		{"v6 CIDR in v4 field", key, obj(`,"IPv4AllocCIDR":{"IP":"fd00::","Mask":"//////////8AAAAAAAAAAA=="}`), []string{"node IPv4AllocCIDR fd00::/64 has the wrong address family"}},
		{"v4 CIDR in v6 field", key, obj(`,"IPv6AllocCIDR":{"IP":"10.0.0.0","Mask":"////AA=="}`), []string{"node IPv6AllocCIDR 10.0.0.0/24 has the wrong address family"}},
		{"null secondary CIDR", key, obj(`,"IPv4SecondaryAllocCIDRs":[null]`), []string{"node IPv4SecondaryAllocCIDRs[0] is null"}},
		{"wrong family secondary", key, obj(`,"IPv6SecondaryAllocCIDRs":[{"IP":"10.0.0.0","Mask":"////AA=="}]`), []string{"node IPv6SecondaryAllocCIDRs[0]"}},
		{"v6 health IP in v4 field", key, obj(`,"IPv4HealthIP":"fd00::1"`), []string{"node IPv4HealthIP fd00::1 is not an IPv4 address"}},
		{"v4 ingress IP in v6 field", key, obj(`,"IPv6IngressIP":"10.0.0.1"`), []string{"node IPv6IngressIP 10.0.0.1 is not an IPv6 address"}},
		{"bad health IP", key, obj(`,"IPv4HealthIP":"x"`), []string{"invalid IP address"}},
		{"bad wireguard key", key, obj(`,"WireguardPubKey":"c2hvcnQ="`), []string{"WireguardPubKey"}},
		{"negative cluster ID", key, obj(`,"ClusterID":-1`), []string{"ClusterID"}},
		{"huge cluster ID", key, obj(`,"ClusterID":1e30`), []string{"ClusterID"}},
		{"cluster ID above uint32", key, obj(`,"ClusterID":4294967296`), []string{"ClusterID"}},
		{"fractional cluster ID", key, obj(`,"ClusterID":1.5`), []string{"ClusterID"}},
		{"encryption key above uint8", key, obj(`,"EncryptionKey":256`), []string{"EncryptionKey"}},
		{"name of wrong type", key, `{"Name":5}`, []string{"Name"}},
		{"labels of wrong type", key, obj(`,"Labels":["a"]`), []string{"Labels"}},
	}...)
	runRejections(t, func(k string, d []byte) error { _, err := DecodeNode(k, d); return err }, cases)
}

func TestDecodeIPEntryRejects(t *testing.T) {
	key := "cilium/state/ip/v1/default/10.0.0.1"
	cidrKey := "cilium/state/ip/v1/default/10.0.0.0/24"
	entry := func(fields string) string { return `{"IP":"10.0.0.1","ID":1000` + fields + `}` }
	cases := append(commonRejections(key), []rejectCase{
		{"bad key", "cilium/state/ip/v1/default/10.0.0.01", entry(""), []string{"invalid etcd key", "not an IP address"}},
		{"mismatched IP", key, `{"IP":"10.0.0.2","ID":1000}`, []string{"entry IP 10.0.0.2 does not match the key's address 10.0.0.1"}},
		{"v6 IP for v4 key", key, `{"IP":"fd00::1","ID":1000}`, []string{"does not match"}},
		{"bad IP", key, `{"IP":"10.0.0.256","ID":1000}`, []string{"10.0.0.256"}},
		{"missing IP", key, `{"ID":1000}`, []string{"entry has no IP"}},
		{"empty IP", key, `{"IP":"","ID":1000}`, []string{"entry has no IP"}},
		{"zero ID", key, `{"IP":"10.0.0.1"}`, []string{"identity ID is 0"}},
		{"ID above 24 bits", key, `{"IP":"10.0.0.1","ID":16777216}`, []string{"16777216"}},
		{"huge ID", key, `{"IP":"10.0.0.1","ID":1e30}`, []string{"ID"}},
		{"negative ID", key, `{"IP":"10.0.0.1","ID":-5}`, []string{"ID"}},
		{"key above uint8", key, entry(`,"Key":256`), []string{"Key"}},
		{"mask on host key", key, entry(`,"Mask":"/////w=="`), []string{"entry has Mask /32 but the key names a single address"}},
		{"no mask on prefix key", cidrKey, `{"IP":"10.0.0.0","ID":1000}`, []string{"entry has no Mask but the key names prefix 10.0.0.0/24"}},
		{"mask length mismatch", cidrKey, `{"IP":"10.0.0.0","ID":1000,"Mask":"//8AAA=="}`, []string{"entry prefix 10.0.0.0/16 does not match the key's prefix 10.0.0.0/24"}},
		{"empty mask", key, entry(`,"Mask":""`), []string{"mask has 0 bytes"}},
		{"v6 mask on v4", cidrKey, `{"IP":"10.0.0.0","ID":1000,"Mask":"/////////////////////w=="}`, []string{"mask has 16 bytes, want 4"}},
		{"non-contiguous mask", cidrKey, `{"IP":"10.0.0.0","ID":1000,"Mask":"/wD/AA=="}`, []string{"not a prefix mask"}},
		{"bad host IP", key, entry(`,"HostIP":"nope"`), []string{"nope"}},
		{"named port without name", key, entry(`,"NamedPorts":[{"Port":80,"Protocol":"TCP"}]`), []string{"named port 0 has no name"}},
		{"named port 0", key, entry(`,"NamedPorts":[{"Name":"http","Protocol":"TCP"}]`), []string{`named port 0 "http" has port 0`}},
		{"named port bad protocol", key, entry(`,"NamedPorts":[{"Name":"ping","Port":1,"Protocol":"ICMP"}]`), []string{`protocol "ICMP" is not one of TCP, UDP, SCTP`}},
		{"named port above uint16", key, entry(`,"NamedPorts":[{"Name":"x","Port":65536,"Protocol":"TCP"}]`), []string{"Port"}},
	}...)
	runRejections(t, func(k string, d []byte) error { _, err := DecodeIPEntry(k, d); return err }, cases)
}

func TestDecodeClusterServiceRejects(t *testing.T) {
	key := "cilium/state/services/v1/c1/default/echo"
	svc := func(fields string) string {
		return `{"cluster":"c1","namespace":"default","name":"echo","clusterID":1` + fields + `}`
	}
	port := func(l4 string) string { return svc(`,"backends":{"10.0.0.1":{"http":` + l4 + `}}`) }
	cases := append(commonRejections(key), []rejectCase{
		{"bad key", "cilium/state/services/v1/c1/echo", svc(""), []string{"invalid etcd key"}},
		{"mismatched cluster", key, `{"cluster":"c2","namespace":"default","name":"echo","clusterID":1}`, []string{`service cluster "c2" does not match the key's cluster "c1"`}},
		{"mismatched namespace", key, `{"cluster":"c1","namespace":"kube-system","name":"echo","clusterID":1}`, []string{`service namespace "kube-system" does not match the key's namespace "default"`}},
		{"mismatched name", key, `{"cluster":"c1","namespace":"default","name":"other","clusterID":1}`, []string{`service name "other" does not match the key's name "echo"`}},
		{"zero cluster ID", key, `{"cluster":"c1","namespace":"default","name":"echo"}`, []string{"clusterID 0 is out of range 1..511"}},
		{"cluster ID 512", key, `{"cluster":"c1","namespace":"default","name":"echo","clusterID":512}`, []string{"clusterID 512"}},
		{"huge cluster ID", key, `{"cluster":"c1","namespace":"default","name":"echo","clusterID":1e30}`, []string{"clusterID"}},
		{"frontend not an IP", key, svc(`,"frontends":{"svc.local":{}}`), []string{`frontends key: "svc.local" is not an IP address`}},
		{"frontend non-canonical", key, svc(`,"frontends":{"FD00::A":{}}`), []string{"not in canonical form"}},
		{"frontend v4-mapped", key, svc(`,"frontends":{"::ffff:10.0.0.1":{}}`), []string{"IPv4-mapped"}},
		{"backend with zone", key, svc(`,"backends":{"fe80::1%eth0":{}}`), []string{"has a zone"}},
		{"hostname key not an IP", key, svc(`,"hostnames":{"pod-0":"pod-0"}`), []string{`hostnames key: "pod-0" is not an IP address`}},
		{"zone key not an IP", key, svc(`,"zones":{"x":{"zone":"a"}}`), []string{`zones key: "x"`}},
		{"null port", key, port(`null`), []string{`backend 10.0.0.1 port "http" is null`}},
		{"port 0", key, port(`{"Protocol":"TCP","Port":0}`), []string{`backend 10.0.0.1 port "http" has port 0`}},
		{"port above uint16", key, port(`{"Protocol":"TCP","Port":65536}`), []string{"Port"}},
		{"negative port", key, port(`{"Protocol":"TCP","Port":-1}`), []string{"Port"}},
		{"lowercase protocol", key, port(`{"Protocol":"tcp","Port":80}`), []string{`protocol "tcp" is not one of TCP, UDP, SCTP`}},
		{"ANY protocol", key, port(`{"Protocol":"ANY","Port":80}`), []string{`protocol "ANY"`}},
		{"missing protocol", key, port(`{"Port":80}`), []string{`protocol ""`}},
		{"frontends of wrong type", key, svc(`,"frontends":[]`), []string{"frontends"}},
		{"shared of wrong type", key, svc(`,"shared":"yes"`), []string{"shared"}},
	}...)
	runRejections(t, func(k string, d []byte) error { _, err := DecodeClusterService(k, d); return err }, cases)
}

func TestDecodeClusterConfigRejects(t *testing.T) {
	key := "cilium/cluster-config/c1"
	cases := append(commonRejections(key), []rejectCase{
		{"bad key", "cilium/cluster-config/", `{"id":1}`, []string{"invalid etcd key", "cluster segment \"\" is empty"}},
		{"missing id", key, `{"capabilities":{"maxConnectedClusters":255}}`, []string{"cluster id 0 is out of range 1..255"}},
		{"empty object", key, `{}`, []string{"cluster id 0"}},
		{"id above legacy max", key, `{"id":256}`, []string{"cluster id 256 is out of range 1..255"}},
		{"id above 255", key, `{"id":256,"capabilities":{"maxConnectedClusters":255}}`, []string{"out of range 1..255"}},
		{"id above 511", key, `{"id":512,"capabilities":{"maxConnectedClusters":511}}`, []string{"out of range 1..511"}},
		{"bad max connected", key, `{"id":1,"capabilities":{"maxConnectedClusters":100}}`, []string{"maxConnectedClusters 100 is not 255 or 511"}},
		{"huge id", key, `{"id":1e30}`, []string{"id"}},
		{"negative id", key, `{"id":-1}`, []string{"id"}},
		{"capabilities of wrong type", key, `{"id":1,"capabilities":[]}`, []string{"capabilities"}},
		{"synced canaries of wrong type", key, `{"id":1,"capabilities":{"syncedCanaries":1}}`, []string{"syncedCanaries"}},
		{"unknown export mode", key, `{"id":1,"capabilities":{"endpointSlicesExportMode":"everything"}}`,
			[]string{`endpointSlicesExportMode "everything" is not one of "", "services-and-endpointslices", "endpointslices-only"`}},
	}...)
	runRejections(t, func(k string, d []byte) error { _, err := DecodeClusterConfig(k, d); return err }, cases)
}

func TestDecodeIdentityRejects(t *testing.T) {
	key := "cilium/state/identities/v1/id/1234"
	cases := []rejectCase{
		{"bad key", "cilium/state/identities/v1/id/01234", "k8s:a=b;", []string{"invalid etcd key", "leading zero"}},
		{"empty", key, "", []string{"identity labels are empty"}},
		{"no trailing semicolon", key, "k8s:a=b", []string{"do not end with ';'"}},
		{"NUL byte", key, "k8s:a=\x00b;", []string{"NUL"}},
		{"invalid UTF-8", key, "k8s:a=\xff;", []string{"UTF-8"}},
	}
	runRejections(t, func(k string, d []byte) error { _, err := DecodeIdentity(k, d); return err }, cases)
}

// TestDecodeAccepts covers valid values beyond the golden ones.
func TestDecodeAccepts(t *testing.T) {
	t.Run("unknown fields are ignored", func(t *testing.T) {
		n, err := DecodeNode("cilium/state/nodes/v1/c1/n1", []byte(`{"Name":"n1","Cluster":"c1","Topology":{"zone":"a"}}`))
		if err != nil || n.Name != "n1" {
			t.Errorf("got %+v, %v", n, err)
		}
	})
	t.Run("empty omitempty collections come back nil", func(t *testing.T) {
		s, err := DecodeClusterService("cilium/state/services/v1/c1/ns/svc",
			[]byte(`{"cluster":"c1","namespace":"ns","name":"svc","clusterID":2,"hostnames":{},"zones":{}}`))
		if err != nil || s.Hostnames != nil || s.Zones != nil {
			t.Errorf("got %+v, %v", s, err)
		}
		e, err := DecodeIPEntry("cilium/state/ip/v1/default/fd00::1", []byte(`{"IP":"fd00::1","ID":5,"NamedPorts":[]}`))
		if err != nil || e.NamedPorts != nil {
			t.Errorf("got %+v, %v", e, err)
		}
	})
	t.Run("v6 prefix entry", func(t *testing.T) {
		e, err := DecodeIPEntry("cilium/state/ip/v1/default/fd00::/64",
			[]byte(`{"IP":"fd00::","Mask":"//////////8AAAAAAAAAAA==","ID":7}`))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := e.Prefix(); err != nil || p.String() != "fd00::/64" {
			t.Errorf("Prefix() = %v, %v", p, err)
		}
	})
	t.Run("custom root", func(t *testing.T) {
		p := Paths{Root: "mesh"}
		if _, err := p.DecodeClusterConfig("mesh/cluster-config/c1", []byte(`{"id":1}`)); err != nil {
			t.Error(err)
		}
		_, err := p.DecodeClusterConfig("cilium/cluster-config/c1", []byte(`{"id":1}`))
		checkMalformed(t, err, "cilium/cluster-config/c1", `not under "mesh/cluster-config/"`)
	})
	t.Run("SCTP and UDP ports", func(t *testing.T) {
		data := `{"cluster":"c1","namespace":"ns","name":"svc","clusterID":2,` +
			`"backends":{"10.0.0.1":{"":{"Protocol":"SCTP","Port":9},"d":{"Protocol":"UDP","Port":65535}}}}`
		if _, err := DecodeClusterService("cilium/state/services/v1/c1/ns/svc", []byte(data)); err != nil {
			t.Error(err)
		}
	})
	t.Run("identity with multibyte labels", func(t *testing.T) {
		id, err := DecodeIdentity("cilium/state/identities/v1/id/16777215", []byte("k8s:app=café;"))
		if err != nil || id.ID != MaxIdentity || !strings.HasSuffix(id.Labels, ";") {
			t.Errorf("got %+v, %v", id, err)
		}
	})
}
