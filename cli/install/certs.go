package install

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/internal/pki"
	"github.com/clustermesh/clustermesh/kvstore"
)

// Certs are a cluster's PEM certificates and keys, as the chart's tls.*
// values.
type Certs struct {
	CACert, CAKey         []byte
	ServerCert, ServerKey []byte
	AdminCert, AdminKey   []byte
	// LocalCert is the agents' certificate (etcd user local) for the
	// cache of remote state.
	LocalCert, LocalKey []byte
}

// Values returns the chart's tls values.
func (c Certs) Values() map[string]any {
	return map[string]any{
		"ca":     map[string]any{"cert": string(c.CACert), "key": string(c.CAKey)},
		"server": map[string]any{"cert": string(c.ServerCert), "key": string(c.ServerKey)},
		"admin":  map[string]any{"cert": string(c.AdminCert), "key": string(c.AdminKey)},
		"local":  map[string]any{"cert": string(c.LocalCert), "key": string(c.LocalKey)},
	}
}

// minValidity: a certificate expiring sooner is re-issued by install.
const minValidity = 30 * 24 * time.Hour

// certValidity of the server and admin certificates install issues.
const certValidity = 3 * 365 * 24 * time.Hour

// ServerNames returns the names and IPs the etcd server certificate must
// cover: the Service's names, loopback (the apiserver's own admin client)
// and the hosts of the endpoints peers use.
func ServerNames(namespace string, endpoints []string) (dns []string, ips []net.IP, err error) {
	svc := mesh.APIServerName
	dns = []string{"localhost", svc, svc + "." + namespace, svc + "." + namespace + ".svc"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, nil, fmt.Errorf("--etcd-endpoints %q: want an https URL like https://203.0.113.10:32379", ep)
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			ips = append(ips, ip)
		} else if !slices.Contains(dns, u.Hostname()) {
			dns = append(dns, u.Hostname())
		}
	}
	return dns, ips, nil
}

// EnsureCerts returns the cluster's certificates: those of existing (the
// installed Secrets' data by name, may be empty) while they are good,
// fresh ones otherwise. reissued names what was (re)generated.
func EnsureCerts(cluster string, existing map[string]map[string][]byte, dns []string, ips []net.IP) (c Certs, reissued []string, err error) {
	ca, err := mesh.ParseCA(existing[mesh.CASecretName][mesh.CACertKey], existing[mesh.CASecretName][mesh.CAKeyKey])
	if err != nil {
		if existing[mesh.CASecretName] != nil {
			return Certs{}, nil, fmt.Errorf("the installed Secret %s is not usable (%w); a new CA would break every pairing: "+
				"fix the Secret, or delete it and run `clustermesh connect` again for every peer after the install", mesh.CASecretName, err)
		}
		if ca, err = pki.NewCA("clustermesh "+cluster+" CA", 0); err != nil {
			return Certs{}, nil, err
		}
		reissued = append(reissued, "CA")
	}
	c.CACert = ca.CertPEM()
	if c.CAKey, err = ca.KeyPEM(); err != nil {
		return Certs{}, nil, err
	}
	srv := existing[mesh.ServerSecretName]
	if leaf, err := mesh.ParseLeaf(srv[mesh.TLSCertKey], srv[mesh.TLSKeyKey]); err == nil && serverOK(leaf, ca, dns, ips) {
		c.ServerCert, c.ServerKey = srv[mesh.TLSCertKey], srv[mesh.TLSKeyKey]
	} else {
		leaf, err := ca.Issue(pki.LeafOptions{CommonName: mesh.APIServerName, DNSNames: dns, IPs: ips, Server: true, Client: true, Validity: certValidity})
		if err != nil {
			return Certs{}, nil, err
		}
		c.ServerCert = leaf.CertPEM()
		if c.ServerKey, err = leaf.KeyPEM(); err != nil {
			return Certs{}, nil, err
		}
		reissued = append(reissued, "etcd server certificate")
	}
	for _, u := range []struct {
		secret, user, what string
		cert, key          *[]byte
	}{
		{mesh.AdminSecretName, kvstore.AdminUser, "admin certificate", &c.AdminCert, &c.AdminKey},
		{mesh.LocalSecretName, kvstore.LocalUser, "local client certificate", &c.LocalCert, &c.LocalKey},
	} {
		s := existing[u.secret]
		if leaf, err := mesh.ParseLeaf(s[mesh.TLSCertKey], s[mesh.TLSKeyKey]); err == nil && mesh.VerifyLeaf(leaf, ca, u.user, minValidity) == nil {
			*u.cert, *u.key = s[mesh.TLSCertKey], s[mesh.TLSKeyKey]
			continue
		}
		leaf, err := ca.Issue(pki.LeafOptions{CommonName: u.user, Client: true, Validity: certValidity})
		if err != nil {
			return Certs{}, nil, err
		}
		*u.cert = leaf.CertPEM()
		if *u.key, err = leaf.KeyPEM(); err != nil {
			return Certs{}, nil, err
		}
		reissued = append(reissued, u.what)
	}
	return c, reissued, nil
}

// serverOK: signed by ca for server use, valid long enough, covering every
// name and IP.
func serverOK(leaf *pki.Leaf, ca *pki.CA, dns []string, ips []net.IP) bool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false
	}
	if time.Until(leaf.Cert.NotAfter) < minValidity {
		return false
	}
	for _, n := range dns {
		if !slices.Contains(leaf.Cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.Cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}
