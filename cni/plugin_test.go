package cni

import (
	"net"
	"strings"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
)

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name, conf, wantErr string
	}{
		{"defaults", `{"cniVersion":"1.0.0","name":"n","type":"clustermesh-cni"}`, ""},
		{"not JSON", `{"cniVersion":`, "not valid JSON"},
		{"bad timeout", `{"cniVersion":"1.0.0","name":"n","type":"clustermesh-cni","timeout":"soon"}`, `"timeout" "soon"`},
		{"negative timeout", `{"cniVersion":"1.0.0","name":"n","type":"clustermesh-cni","timeout":"-1s"}`, "positive duration"},
		{"bad prevResult", `{"cniVersion":"1.0.0","name":"n","type":"clustermesh-cni","prevResult":{"ips":[{"address":"nonsense"}]}}`, "prevResult"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, timeout, err := parseConf([]byte(tc.conf))
			if tc.wantErr == "" {
				if err != nil || conf.AgentSocket == "" || timeout <= 0 {
					t.Fatalf("parseConf = %+v, %v, %v", conf, timeout, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("parseConf error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	conf, _, err := parseConf([]byte(`{"cniVersion":"1.0.0","name":"n","type":"clustermesh-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prevResult(conf); err == nil || !strings.Contains(err.Error(), "chained plugin") {
		t.Fatalf("prevResult without one: %v", err)
	}
}

func TestResultParsing(t *testing.T) {
	idx := func(i int) *int { return &i }
	cidr := func(s string) net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return *n
	}
	// The bridge plugin reports the bridge, the host veth, then the pod's.
	res := &types100.Result{
		Interfaces: []*types100.Interface{{Name: "cni0"}, {Name: "veth1234"}, {Name: "eth0", Sandbox: "/var/run/netns/p"}, {Name: "net1", Sandbox: "/var/run/netns/p"}},
		IPs: []*types100.IPConfig{
			{Interface: idx(2), Address: cidr("10.1.0.5/24")},
			{Interface: idx(2), Address: cidr("fd00::5/64")},
			{Interface: idx(3), Address: cidr("10.9.0.5/24")}, // another interface
			{Interface: idx(9), Address: cidr("10.8.0.5/24")}, // out of range: ignored
			nil,
		},
	}
	host, err := hostInterface(res, "/var/run/netns/p")
	if err != nil || host != "veth1234" {
		t.Fatalf("hostInterface = %q, %v", host, err)
	}
	if got := strings.Join(containerIPs(res, "eth0", "/var/run/netns/p"), ","); got != "10.1.0.5,fd00::5" {
		t.Fatalf("containerIPs = %s", got)
	}
	if _, err := hostInterface(&types100.Result{Interfaces: []*types100.Interface{{Name: "eth0", Sandbox: "/x"}}}, "/x"); err == nil || !strings.Contains(err.Error(), "veth pair") {
		t.Fatalf("hostInterface without a host side: %v", err)
	}
}
