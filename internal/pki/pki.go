// Package pki mints the certificates of a cluster's mesh: one CA per cluster,
// server certificates for the clustermesh-apiserver's etcd, and client
// certificates whose common name is the etcd user they log in as.
//
// Rules: keys are ECDSA P-256; private keys never leave the returned values
// except through the PEM encoders; nothing here reads global state.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority able to issue leaf certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// LeafOptions says what a leaf certificate is for.
type LeafOptions struct {
	// CommonName is the subject CN; for etcd client certificates it is the
	// etcd user name.
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// Server and Client select the extended key usages (both may be set).
	Server, Client bool
	// Validity defaults to one year.
	Validity time.Duration
}

// NewCA creates a self-signed CA valid for validity (default ten years).
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new CA: empty common name")
	}
	if validity <= 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: generate key: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: sign: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: parse: %w", commonName, err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue signs a new leaf certificate.
func (ca *CA) Issue(opts LeafOptions) (*Leaf, error) {
	if opts.CommonName == "" {
		return nil, errors.New("issue certificate: empty common name")
	}
	if !opts.Server && !opts.Client {
		return nil, fmt.Errorf("issue certificate %q: neither server nor client usage requested", opts.CommonName)
	}
	validity := opts.Validity
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: generate key: %w", opts.CommonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	var usages []x509.ExtKeyUsage
	if opts.Server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if opts.Client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: opts.CommonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usages,
		DNSNames:     opts.DNSNames,
		IPAddresses:  opts.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: sign: %w", opts.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: parse: %w", opts.CommonName, err)
	}
	return &Leaf{Cert: cert, Key: key}, nil
}

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte { return certPEM(ca.Cert) }

// KeyPEM returns the CA key in PEM form.
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.Key) }

// CertPEM returns the leaf certificate in PEM form.
func (l *Leaf) CertPEM() []byte { return certPEM(l.Cert) }

// KeyPEM returns the leaf key in PEM form.
func (l *Leaf) KeyPEM() ([]byte, error) { return keyPEM(l.Key) }

// WriteFiles writes <dir>/<name>.crt and <dir>/<name>.key (mode 0600) and
// returns their paths.
func (l *Leaf) WriteFiles(dir, name string) (certFile, keyFile string, err error) {
	k, err := l.KeyPEM()
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, l.CertPEM(), 0o600); err != nil {
		return "", "", fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		return "", "", fmt.Errorf("write key: %w", err)
	}
	return certFile, keyFile, nil
}

// WriteCertFile writes the CA certificate to <dir>/<name>.crt.
func (ca *CA) WriteCertFile(dir, name string) (string, error) {
	p := filepath.Join(dir, name+".crt")
	if err := os.WriteFile(p, ca.CertPEM(), 0o600); err != nil {
		return "", fmt.Errorf("write CA certificate: %w", err)
	}
	return p, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return s, nil
}
