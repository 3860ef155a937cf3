package remote

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Equal port configurations of services end up one map; configurations
// that differ in a name, protocol, port or a nil port, or that only a
// naive key would confuse, stay apart; the set stays bounded.
func TestSharedPorts(t *testing.T) {
	pc := func(kv ...any) schema.PortConfiguration {
		out := schema.PortConfiguration{}
		for i := 0; i < len(kv); i += 3 {
			if kv[i+1] == nil {
				out[kv[i].(string)] = nil
				continue
			}
			out[kv[i].(string)] = &schema.L4Addr{Protocol: kv[i+1].(string), Port: uint16(kv[i+2].(int))}
		}
		return out
	}
	var s sharedPorts
	a := map[string]schema.PortConfiguration{"10.0.0.1": pc("http", "TCP", 80, "dns", "UDP", 53)}
	b := map[string]schema.PortConfiguration{"10.0.0.2": pc("dns", "UDP", 53, "http", "TCP", 80), "10.0.0.3": pc("http", "TCP", 80, "dns", "UDP", 53)}
	s.share(a)
	s.share(b)
	if reflect.ValueOf(a["10.0.0.1"]).Pointer() != reflect.ValueOf(b["10.0.0.2"]).Pointer() ||
		reflect.ValueOf(b["10.0.0.2"]).Pointer() != reflect.ValueOf(b["10.0.0.3"]).Pointer() {
		t.Fatal("equal port configurations not shared")
	}
	distinct := []schema.PortConfiguration{
		pc("http", "TCP", 80),
		pc("http", "TCP", 8080),
		pc("http", "UDP", 80),
		pc("web", "TCP", 80),
		pc("http", nil, 0),
		pc("", "TCP", 80),
		pc("a\";\"b", "TCP", 80),
		pc("a", "TCP", 80, "b", "TCP", 80),
		pc("a\"TCP\"80;\"b", "TCP", 80),
	}
	m := map[string]schema.PortConfiguration{}
	for i, p := range distinct {
		m[fmt.Sprint(i)] = p
	}
	s.share(m)
	for i, p := range distinct {
		if !reflect.DeepEqual(m[fmt.Sprint(i)], p) {
			t.Fatalf("configuration %d became %v, want %v", i, m[fmt.Sprint(i)], p)
		}
	}
	empty := map[string]schema.PortConfiguration{"x": {}, "y": nil}
	s.share(empty)
	if empty["x"] == nil || empty["y"] != nil {
		t.Fatalf("empty and nil configurations changed: %#v", empty)
	}
	for i := range 3 * maxSharedPorts {
		s.share(map[string]schema.PortConfiguration{"ip": pc("p", "TCP", i%65536)})
		if len(s) > maxSharedPorts {
			t.Fatalf("%d shared configurations, at most %d", len(s), maxSharedPorts)
		}
	}
}
