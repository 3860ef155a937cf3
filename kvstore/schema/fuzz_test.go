package schema

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// checkFuzzError asserts the contract every failure must meet.
func checkFuzzError(t *testing.T, err error, key string) {
	t.Helper()
	var de *DecodeError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &de) || de.Key != key {
		t.Fatalf("error %v for key %q is not a *DecodeError for that key matching ErrMalformed", err, key)
	}
	if !strings.Contains(err.Error(), strconv.Quote(key)) {
		t.Fatalf("error %q does not quote the key %q", err, key)
	}
}

// fuzzRoundTrip decodes data at key; when that succeeds, Marshal and decode
// again must give an equal value.
func fuzzRoundTrip[T interface{ Marshal() ([]byte, error) }](t *testing.T, key string, data []byte,
	decode func(string, []byte) (T, error)) {
	t.Helper()
	v, err := decode(key, data)
	if err != nil {
		checkFuzzError(t, err, key)
		return
	}
	out, err := v.Marshal()
	if err != nil {
		t.Fatalf("Marshal of decoded %#v: %v", v, err)
	}
	again, err := decode(key, out)
	if err != nil {
		t.Fatalf("decode(Marshal(v)) failed: %v\ninput:  %q\noutput: %q", err, data, out)
	}
	if d := diff(again, v); d != "" {
		t.Fatalf("decode(Marshal(v)) != v:%s", d)
	}
}

func FuzzDecodeNode(f *testing.F) {
	key := "cilium/state/nodes/v1/c1/n1"
	f.Add(key, []byte(goldenNodeJSON))
	f.Add("cilium/state/nodes/v1/default/k8s-node1", []byte(`{"Name":"k8s-node1","Cluster":"default",`+
		`"IPAddresses":[{"Type":"InternalIP","IP":"10.5.1.132"}],"IPv4AllocCIDR":{"IP":"10.6.6.0","Mask":"////AA=="},`+
		`"IPv6AllocCIDR":null,"IPv4HealthIP":"10.6.6.79","IPv6HealthIP":"","ClusterID":0,"Source":"local","EncryptionKey":0}`))
	f.Add(key, []byte(`{"Name":"n1","Cluster":"c1","IPv6SecondaryAllocCIDRs":[{"IP":"fd00::","Mask":"//////////8AAAAAAAAAAA=="}]}`))
	f.Add(key, []byte(`{"Name":"n1","Cluster":"c1","IPAddresses":[{"Type":"InternalIP","IP":"::ffff:10.0.0.1"}]}`))
	f.Add(key, []byte(`{"Name":"x","Cluster":"c1"}`))
	f.Add(key, []byte(`{"Name":"n1","Cluster":"c1","IPv4AllocCIDR":{"IP":"10.0.0.5","Mask":"////AA=="}}`))
	f.Add(key, []byte(`{"Name":"n1","Cluster":"c1","IPv4AllocCIDR":"10.0.0.0/24"}`))
	f.Add(key, []byte(`{"Name":"n1","Cluster":"c1","ClusterID":1e30}`))
	f.Add(key, []byte(`null`))
	f.Add(key, []byte(`[]`))
	f.Add(key, []byte(`{"Name":"n1"`))
	f.Add("cilium/state/nodes/v1/c1/..", []byte(`{"Name":"..","Cluster":"c1"}`))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		fuzzRoundTrip(t, key, data, DecodeNode)
	})
}

func FuzzDecodeIPEntry(f *testing.F) {
	f.Add("cilium/state/ip/v1/default/10.6.6.43", []byte(goldenIPEntryJSON))
	f.Add("cilium/state/ip/v1/default/10.0.0.0/24", []byte(`{"IP":"10.0.0.0","Mask":"////AA==","HostIP":"","ID":7,"Key":0,"Metadata":""}`))
	f.Add("cilium/state/ip/v1/default/fd00::/64", []byte(`{"IP":"fd00::","Mask":"//////////8AAAAAAAAAAA==","ID":7}`))
	f.Add("cilium/state/ip/v1/default/fd00::1", []byte(`{"IP":"fd00::1","HostIP":"fc00::2","ID":16777215,"NamedPorts":[]}`))
	f.Add("cilium/state/ip/v1/default/10.0.0.1", []byte(`{"IP":"::ffff:10.0.0.1","ID":9}`))
	f.Add("cilium/state/ip/v1/default/10.0.0.1", []byte(`{"IP":"10.0.0.2","ID":9}`))
	f.Add("cilium/state/ip/v1/default/10.0.0.1", []byte(`{"IP":"10.0.0.1","ID":0}`))
	f.Add("cilium/state/ip/v1/default/10.0.0.1", []byte(`{"IP":"10.0.0.1","ID":9,"Mask":""}`))
	f.Add("cilium/state/ip/v1/default/10.0.0.1", []byte(`{"IP":"10.0.0.1","ID":9,"NamedPorts":[{"Name":"a","Port":0}]}`))
	f.Add("cilium/state/ip/v1/default/010.0.0.1", []byte(`{}`))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		fuzzRoundTrip(t, key, data, DecodeIPEntry)
	})
}

func FuzzDecodeClusterService(f *testing.F) {
	f.Add("cilium/state/services/v1/c1/default/echo", []byte(goldenServiceJSON))
	f.Add("cilium/state/services/v1/c2/ns/headless", []byte(`{"cluster":"c2","namespace":"ns","name":"headless","frontends":null,`+
		`"backends":null,"labels":null,"selector":null,"includeExternal":false,"shared":false,"clusterID":511}`))
	f.Add("cilium/state/services/v1/c1/ns/svc", []byte(`{"cluster":"c1","namespace":"ns","name":"svc","clusterID":2,"hostnames":{},`+
		`"zones":{"10.0.0.1":{"zone":"a","forZones":[{"name":"a"}]}},"frontends":{"10.0.0.9":null}}`))
	f.Add("cilium/state/services/v1/c1/ns/svc", []byte(`{"cluster":"c1","namespace":"ns","name":"svc","clusterID":2,`+
		`"backends":{"10.0.0.1":{"http":{"Protocol":"ANY","Port":0}}}}`))
	f.Add("cilium/state/services/v1/c1/ns/svc", []byte(`{"cluster":"c1","namespace":"ns","name":"svc","clusterID":2,`+
		`"backends":{"10.0.0.1":{"http":null}}}`))
	f.Add("cilium/state/services/v1/c1/ns/svc", []byte(`{"cluster":"c1","namespace":"ns","name":"x","clusterID":2}`))
	f.Add("cilium/state/services/v1/c1/ns/svc", []byte(`{"cluster":"c1","namespace":"ns","name":"svc","frontends":{"FD00::1":{}}}`))
	f.Add("cilium/state/services/v1/c1/ns", []byte(`[]`))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		fuzzRoundTrip(t, key, data, DecodeClusterService)
	})
}

func FuzzDecodeClusterConfig(f *testing.F) {
	key := "cilium/cluster-config/c1"
	f.Add(key, []byte(`{"id":1,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`))
	f.Add(key, []byte(`{"id":300,"capabilities":{"syncedCanaries":true,"cached":true,"maxConnectedClusters":511,"serviceExportsEnabled":false}}`))
	f.Add(key, []byte(`{"id":3,"capabilities":{}}`))
	f.Add(key, []byte(`{"id":3,"capabilities":null}`))
	f.Add(key, []byte(`{"id":256}`))
	f.Add(key, []byte(`{"id":1,"capabilities":{"maxConnectedClusters":100}}`))
	f.Add(key, []byte(`{"id":1e30}`))
	f.Add(key, []byte(`null`))
	f.Add("cilium/cluster-config/", []byte(`{"id":1}`))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		fuzzRoundTrip(t, key, data, DecodeClusterConfig)
	})
}

func FuzzParseKeys(f *testing.F) {
	p := DefaultPaths()
	for _, k := range []string{
		p.Node("c1", "n1"), p.Service("c1", "ns", "svc"), p.Identity(1), p.Identity(MaxIdentity),
		p.IP(mustAddr("10.0.0.1")), p.IP(mustAddr("fd00::1")), "cilium/state/ip/v1/default/10.0.0.0/24",
		"cilium/state/ip/v1/default/fd00::/64", p.ClusterConfig("c1"),
		"cilium/state/nodes/v1/c1/..", "cilium/state/nodes/v1//n1", "cilium/state/identities/v1/id/+1",
		"cilium/state/identities/v1/id/16777216", "cilium/state/ip/v1/default/::ffff:1.2.3.4",
		"cilium/state/ip/v1/default/10.0.0.1/24", "cilium/state/ip/v1/default/fe80::1%eth0", "",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		check := func(err error, rebuilt string) {
			t.Helper()
			if err != nil {
				checkFuzzError(t, err, key)
			} else if rebuilt != key {
				t.Fatalf("parsed key %q rebuilds as %q", key, rebuilt)
			}
		}
		cluster, node, err := p.ParseNodeKey(key)
		check(err, p.Node(cluster, node))
		cluster, ns, name, err := p.ParseServiceKey(key)
		check(err, p.Service(cluster, ns, name))
		id, err := p.ParseIdentityKey(key)
		check(err, p.Identity(id))
		if err == nil && (id == 0 || id > MaxIdentity) {
			t.Fatalf("ParseIdentityKey(%q) = %d, out of range", key, id)
		}
		cluster, err = p.ParseClusterConfigKey(key)
		check(err, p.ClusterConfig(cluster))
		addr, err := p.ParseIPKey(key)
		check(err, p.IP(addr))
		prefix, err := p.ParseIPPrefixKey(key)
		switch {
		case err != nil:
			check(err, "")
		case !prefix.IsValid():
			t.Fatalf("ParseIPPrefixKey(%q) = invalid prefix", key)
		case addr.IsValid():
			check(nil, p.IP(prefix.Addr()))
		default:
			check(nil, p.IPCIDR(prefix))
		}
	})
}

// FuzzIPEntryFastPath checks that whenever the fast ip entry decoder
// accepts a value, encoding/json decodes it to the same entry.
func FuzzIPEntryFastPath(f *testing.F) {
	f.Add([]byte(goldenIPEntryJSON))
	f.Add([]byte(`{"IP":"10.0.0.0","Mask":"////AA==","HostIP":"","ID":7,"Key":0,"Metadata":""}`))
	f.Add([]byte(` { "IP" : "fd00::1" , "HostIP":null,"ID":16777215,"K8sPodName":"p","K8sNamespace":"n","K8sServiceAccount":"sa"} `))
	f.Add([]byte(`{"IP":"10.0.0.1","ID":4294967295,"Key":255,"Mask":null}`))
	f.Add([]byte(`{"IP":"10.0.0.1","ID":4294967296}`))
	f.Add([]byte(`{"IP":"10.0.0.1","ID":01}`))
	f.Add([]byte(`{"ip":"10.0.0.1","ID":1e3}`))
	f.Add([]byte(`{"IP":"10.0.0.1","IP":"10.0.0.2","ID":9}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast IPEntry
		if !decodeIPEntryFast(data, &fast) {
			return
		}
		var slow IPEntry
		if err := decodeObject(data, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json fails: %v", data, err)
		}
		if d := diff(slow, fast); d != "" {
			t.Fatalf("fast path and encoding/json differ on %q:%s", data, d)
		}
	})
}
