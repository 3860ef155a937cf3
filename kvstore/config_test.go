package kvstore_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/kvstore"
)

func TestParseClientConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       kvstore.ClientConfig
		wantErr    string
	}{
		{
			name: "cilium clustermesh file",
			yaml: "endpoints:\n- https://cluster2.mesh.example:2379\ntrusted-ca-file: /var/lib/cilium/clustermesh/cluster2-ca.crt\n" +
				"cert-file: /var/lib/cilium/clustermesh/cluster2.crt\nkey-file: /var/lib/cilium/clustermesh/cluster2.key\n",
			want: kvstore.ClientConfig{
				Endpoints:     []string{"https://cluster2.mesh.example:2379"},
				TrustedCAFile: "/var/lib/cilium/clustermesh/cluster2-ca.crt",
				CertFile:      "/var/lib/cilium/clustermesh/cluster2.crt", KeyFile: "/var/lib/cilium/clustermesh/cluster2.key",
				DialTimeout: kvstore.Duration(kvstore.DefaultDialTimeout), KeepAliveTime: kvstore.Duration(kvstore.DefaultKeepAliveTime),
				KeepAliveTimeout: kvstore.Duration(kvstore.DefaultKeepAliveTimeout),
				RateLimitQPS:     kvstore.DefaultRateLimitQPS, RateLimitBurst: kvstore.DefaultRateLimitBurst,
			},
		},
		{
			name: "legacy ca-file, durations as strings and nanoseconds",
			yaml: "endpoints: [https://a:2379]\nca-file: /ca.crt\ndial-timeout: 2s\ndial-keep-alive-time: 1000000000\nrate-limit-qps: -1\n",
			want: kvstore.ClientConfig{
				Endpoints: []string{"https://a:2379"}, CAFile: "/ca.crt", TrustedCAFile: "/ca.crt",
				DialTimeout: kvstore.Duration(2 * time.Second), KeepAliveTime: kvstore.Duration(time.Second),
				KeepAliveTimeout: kvstore.Duration(kvstore.DefaultKeepAliveTimeout),
				RateLimitQPS:     -1, RateLimitBurst: kvstore.DefaultRateLimitBurst,
			},
		},
		{
			name: "trust anchors recorded by connect",
			yaml: "endpoints: [http://a:2379]\ncluster-id: 511\npod-cidrs: [10.2.0.0/16, fd00:2::/64]\n",
			want: kvstore.ClientConfig{
				Endpoints: []string{"http://a:2379"}, ClusterID: 511, PodCIDRs: []string{"10.2.0.0/16", "fd00:2::/64"},
				DialTimeout: kvstore.Duration(kvstore.DefaultDialTimeout), KeepAliveTime: kvstore.Duration(kvstore.DefaultKeepAliveTime),
				KeepAliveTimeout: kvstore.Duration(kvstore.DefaultKeepAliveTimeout),
				RateLimitQPS:     kvstore.DefaultRateLimitQPS, RateLimitBurst: kvstore.DefaultRateLimitBurst,
			},
		},
		{name: "no endpoints", yaml: "trusted-ca-file: /ca\n", wantErr: "no endpoints"},
		{name: "cluster ID out of range", yaml: "endpoints: [http://a:2379]\ncluster-id: 512\n", wantErr: "cluster-id 512 is out of range: set the peer's cluster ID (1..511"},
		{name: "negative cluster ID", yaml: "endpoints: [http://a:2379]\ncluster-id: -1\n", wantErr: "cluster-id"},
		{name: "pod CIDR not a CIDR", yaml: "endpoints: [http://a:2379]\npod-cidrs: [10.2.0.0]\n", wantErr: `pod-cidrs: "10.2.0.0" is not a CIDR: write the peer's pod CIDRs like 10.2.0.0/16`},
		{name: "pod CIDR with host bits", yaml: "endpoints: [http://a:2379]\npod-cidrs: [10.2.1.0/16]\n", wantErr: `pod-cidrs: "10.2.1.0/16" has host bits set: write it as 10.2.0.0/16`},
		{name: "pod CIDRs not a list", yaml: "endpoints: [http://a:2379]\npod-cidrs: 10.2.0.0/16\n", wantErr: "pod-cidrs"},
		{name: "https without CA", yaml: "endpoints: [https://a:2379]\n", wantErr: "trusted-ca-file is empty"},
		{name: "cert without key", yaml: "endpoints: [https://a:2379]\ntrusted-ca-file: /ca\ncert-file: /c\n", wantErr: "set together"},
		{name: "http with TLS files", yaml: "endpoints: [http://a:2379]\ntrusted-ca-file: /ca\n", wantErr: "uses http"},
		{name: "bad scheme", yaml: "endpoints: [ftp://a:2379]\n", wantErr: "scheme"},
		{name: "not a URL", yaml: "endpoints: [a:2379]\n", wantErr: "not a URL"},
		{name: "skip verify", yaml: "endpoints: [https://a:2379]\ntrusted-ca-file: /ca\ninsecure-skip-tls-verify: true\n", wantErr: "untrusted"},
		{name: "typo", yaml: "endpoints: [http://a:2379]\ntrusted-ca-fil: /ca\n", wantErr: "unknown field"},
		{name: "bad duration", yaml: "endpoints: [http://a:2379]\ndial-timeout: soon\n", wantErr: "duration"},
		{name: "not yaml", yaml: "{{{", wantErr: "invalid etcd configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kvstore.ParseClientConfig([]byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, kvstore.ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

// What connect records survives a write and a load, and a file without it
// pins nothing.
func TestClientConfigTrustRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       kvstore.ClientConfig
		wantKeys  []string
		wantCIDRs []netip.Prefix
	}{
		{
			name:      "pinned",
			cfg:       kvstore.ClientConfig{Endpoints: []string{"http://a:2379"}, ClusterID: 2, PodCIDRs: []string{"10.2.0.0/16", "fd00:2::/64"}},
			wantKeys:  []string{"cluster-id: 2", "pod-cidrs:\n- 10.2.0.0/16\n- fd00:2::/64"},
			wantCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/64")},
		},
		{name: "nothing pinned", cfg: kvstore.ClientConfig{Endpoints: []string{"http://a:2379"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := yaml.Marshal(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.wantKeys {
				if !strings.Contains(string(b), k) {
					t.Errorf("written file lacks %q:\n%s", k, b)
				}
			}
			if len(tc.wantKeys) == 0 && (strings.Contains(string(b), "cluster-id") || strings.Contains(string(b), "pod-cidrs")) {
				t.Errorf("unpinned file writes trust keys:\n%s", b)
			}
			p := filepath.Join(t.TempDir(), "cluster2")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := kvstore.LoadClientConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			if got.ClusterID != tc.cfg.ClusterID {
				t.Errorf("cluster-id = %d, want %d", got.ClusterID, tc.cfg.ClusterID)
			}
			cidrs, err := got.PodCIDRPrefixes()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantCIDRs, cidrs, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("pod CIDRs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadClientConfigNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster2")
	if err := os.WriteFile(p, []byte("endpoints: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := kvstore.LoadClientConfig(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want it to name %s", err, p)
	}
	if _, err := kvstore.LoadClientConfig(p + ".missing"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestTLSConfigErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := kvstore.ClientConfig{Endpoints: []string{"https://a:1"}, TrustedCAFile: notPEM}
	if _, err := cfg.TLSConfig(); err == nil || !strings.Contains(err.Error(), notPEM) {
		t.Fatalf("err = %v, want it to name %s", err, notPEM)
	}
	cfg = kvstore.ClientConfig{Endpoints: []string{"https://a:1"}, TrustedCAFile: filepath.Join(dir, "nope")}
	if _, err := cfg.TLSConfig(); err == nil || !strings.Contains(err.Error(), "trusted-ca-file") {
		t.Fatalf("err = %v, want it to name trusted-ca-file", err)
	}
}

// Durations are written as integer nanoseconds, as etcd's client config
// (which Cilium's kvstore client reads) expects, and read back either way.
func TestDurationsWrittenAsEtcdReadsThem(t *testing.T) {
	cfg := kvstore.ClientConfig{Endpoints: []string{"https://127.0.0.1:2379"}, DialTimeout: kvstore.Duration(5 * time.Second)}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "dial-timeout: 5000000000\n") {
		t.Fatalf("dial-timeout not written as integer nanoseconds:\n%s", b)
	}
	for _, text := range []string{string(b), strings.Replace(string(b), "5000000000", `"5s"`, 1)} {
		var back kvstore.ClientConfig
		if err := yaml.Unmarshal([]byte(text), &back); err != nil {
			t.Fatal(err)
		}
		if back.DialTimeout != cfg.DialTimeout {
			t.Fatalf("read back %v from:\n%s", time.Duration(back.DialTimeout), text)
		}
	}
}
