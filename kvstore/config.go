package kvstore

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/identity"
)

// ClientConfig is the per-cluster etcd client configuration file users
// already have: the same YAML keys as etcd's own client config and Cilium's
// clustermesh config files (endpoints, trusted-ca-file, cert-file, key-file),
// plus the project's timeouts and rate limit, and what `clustermesh connect`
// recorded of the cluster the file reaches (cluster-id, pod-cidrs).
//
// Cilium's agent ignores keys it does not know, so a file with cluster-id
// and pod-cidrs still works there; a file without them still works here:
// then nothing of the peer is pinned.
type ClientConfig struct {
	Endpoints     []string `json:"endpoints"`
	TrustedCAFile string   `json:"trusted-ca-file,omitempty"`
	// CAFile is etcd's deprecated spelling of TrustedCAFile.
	CAFile   string `json:"ca-file,omitempty"`
	CertFile string `json:"cert-file,omitempty"`
	KeyFile  string `json:"key-file,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	DialTimeout      Duration `json:"dial-timeout,omitempty"`
	KeepAliveTime    Duration `json:"dial-keep-alive-time,omitempty"`
	KeepAliveTimeout Duration `json:"dial-keep-alive-timeout,omitempty"`
	// RateLimitQPS bounds requests per second from this client (0: the
	// default, negative: unlimited); RateLimitBurst is the bucket size.
	RateLimitQPS   float64 `json:"rate-limit-qps,omitempty"`
	RateLimitBurst int     `json:"rate-limit-burst,omitempty"`

	// Accepted for compatibility with etcd's client config; unused.
	AutoSyncInterval Duration `json:"auto-sync-interval,omitempty"`
	RejectOldCluster bool     `json:"reject-old-cluster,omitempty"`
	// InsecureSkipTLSVerify is refused: remote clusters are untrusted.
	InsecureSkipTLSVerify bool `json:"insecure-skip-tls-verify,omitempty"`

	// Trust anchors, recorded by `clustermesh connect` from the peer's own
	// settings, not from what its etcd says. ClusterID is the cluster ID
	// the peer must announce (0: not pinned). PodCIDRs are the peer's pod
	// CIDRs (its ConfigMap's pod-cidrs), masked, like "10.2.0.0/16"; read
	// them parsed with PodCIDRPrefixes.
	ClusterID uint32   `json:"cluster-id,omitempty"`
	PodCIDRs  []string `json:"pod-cidrs,omitempty"`
}

// Defaults applied by Validate for zero fields.
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultKeepAliveTime    = 15 * time.Second
	DefaultKeepAliveTimeout = 5 * time.Second
	DefaultRateLimitQPS     = 200
	DefaultRateLimitBurst   = 400
)

// Duration is a time.Duration in YAML/JSON, read as "5s" or, as etcd's own
// client config (and so Cilium) writes it, as an integer of nanoseconds.
type Duration time.Duration

// UnmarshalJSON accepts "1m30s" or an integer of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w (write it like \"5s\")", s, err)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string like \"5s\" or integer nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// MarshalJSON writes the duration as an integer of nanoseconds, the form
// etcd's client config (clientv3/yaml), and so Cilium's kvstore client,
// reads: a config file we write stays readable by a Cilium agent.
func (d Duration) MarshalJSON() ([]byte, error) { return strconv.AppendInt(nil, int64(d), 10), nil }

// LoadClientConfig reads and validates a client config file.
func LoadClientConfig(path string) (ClientConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ClientConfig{}, fmt.Errorf("read etcd config: %w", err)
	}
	cfg, err := ParseClientConfig(b)
	if err != nil {
		return ClientConfig{}, fmt.Errorf("etcd config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseClientConfig parses and validates YAML (or JSON) client config.
// Unknown keys are refused so that a typo does not silently drop a setting.
func ParseClientConfig(b []byte) (ClientConfig, error) {
	var cfg ClientConfig
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return ClientConfig{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return ClientConfig{}, err
	}
	return cfg, nil
}

// Validate checks the config and fills defaults.
func (c *ClientConfig) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if len(c.Endpoints) == 0 {
		return bad("no endpoints: set endpoints to the etcd URLs, e.g. [https://clustermesh-apiserver.example:2379]")
	}
	if c.TrustedCAFile == "" {
		c.TrustedCAFile = c.CAFile
	}
	if c.InsecureSkipTLSVerify {
		return bad("insecure-skip-tls-verify is not supported: remote clusters are untrusted; set trusted-ca-file to the peer's CA")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return bad("cert-file and key-file must be set together (cert-file=%q, key-file=%q)", c.CertFile, c.KeyFile)
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" {
			return bad("endpoint %q is not a URL like https://host:2379", ep)
		}
		switch u.Scheme {
		case "https":
			if c.TrustedCAFile == "" {
				return bad("endpoint %q uses https but trusted-ca-file is empty: set it to the CA of that etcd", ep)
			}
		case "http":
			if c.TLSEnabled() {
				return bad("endpoint %q uses http but TLS files are configured: use https://", ep)
			}
		default:
			return bad("endpoint %q: scheme must be http or https", ep)
		}
	}
	if c.ClusterID > uint32(identity.MaxConnectedClusters511) {
		return bad("cluster-id %d is out of range: set the peer's cluster ID (1..%d, its ConfigMap's cluster-id), or remove the key to pin none",
			c.ClusterID, identity.MaxConnectedClusters511)
	}
	if _, err := c.PodCIDRPrefixes(); err != nil {
		return bad("%v", err)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = Duration(DefaultDialTimeout)
	}
	if c.KeepAliveTime <= 0 {
		c.KeepAliveTime = Duration(DefaultKeepAliveTime)
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = Duration(DefaultKeepAliveTimeout)
	}
	if c.RateLimitQPS == 0 {
		c.RateLimitQPS = DefaultRateLimitQPS
	}
	if c.RateLimitBurst <= 0 {
		c.RateLimitBurst = DefaultRateLimitBurst
	}
	return nil
}

// PodCIDRPrefixes returns the pod-cidrs parsed; nil when none is
// recorded. It fails on an entry that is not a masked CIDR.
func (c *ClientConfig) PodCIDRPrefixes() ([]netip.Prefix, error) {
	if len(c.PodCIDRs) == 0 {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(c.PodCIDRs))
	for _, s := range c.PodCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("pod-cidrs: %q is not a CIDR: write the peer's pod CIDRs like 10.2.0.0/16 (its ConfigMap's pod-cidrs), or remove the key to pin none", s)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("pod-cidrs: %q has host bits set: write it as %s", s, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

// TLSEnabled reports whether any TLS file is configured.
func (c *ClientConfig) TLSEnabled() bool {
	return c.TrustedCAFile != "" || c.CertFile != ""
}

// TLSConfig loads the configured CA and client certificate. It returns nil
// when TLS is not configured.
func (c *ClientConfig) TLSConfig() (*tls.Config, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TrustedCAFile != "" {
		pem, err := os.ReadFile(c.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: read trusted-ca-file: %w", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: trusted-ca-file %s holds no PEM certificate", ErrInvalidConfig, c.TrustedCAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: load cert-file %s / key-file %s: %w", ErrInvalidConfig, c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
