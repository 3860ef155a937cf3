package pki

import (
	"crypto/x509"
	"net"
	"testing"
)

func TestIssueVerifiesAgainstCA(t *testing.T) {
	ca, err := NewCA("cluster1 CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("cluster2 CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(LeafOptions{CommonName: "remote", Client: true, Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify against its CA: %v", err)
	}
	wrong := x509.NewCertPool()
	wrong.AddCert(other.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: wrong}); err == nil {
		t.Fatal("leaf verified against a foreign CA")
	}
	if _, err := ca.Issue(LeafOptions{CommonName: "x"}); err == nil {
		t.Fatal("a certificate with no usage was issued")
	}
}
