package mesh

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clustermesh/clustermesh/internal/pki"
)

// ParseCA decodes a CA certificate and its private key (PEM) and checks
// that they belong together and that the certificate is a valid CA.
func ParseCA(certPEM, keyPEM []byte) (*pki.CA, error) {
	cert, key, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("CA: certificate %q is not a CA certificate", cert.Subject.CommonName)
	}
	if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("CA: certificate %q is valid from %s to %s only: rotate the CA with `clustermesh install`",
			cert.Subject.CommonName, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	return &pki.CA{Cert: cert, Key: key}, nil
}

// ParseLeaf decodes a certificate and its private key (PEM).
func ParseLeaf(certPEM, keyPEM []byte) (*pki.Leaf, error) {
	cert, key, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &pki.Leaf{Cert: cert, Key: key}, nil
}

// VerifyLeaf checks that leaf is a client certificate signed by ca, with
// the common name user, valid now and for at least minValidity more.
func VerifyLeaf(leaf *pki.Leaf, ca *pki.CA, user string, minValidity time.Duration) error {
	if leaf.Cert.Subject.CommonName != user {
		return fmt.Errorf("certificate common name is %q, want %q (the etcd user)", leaf.Cert.Subject.CommonName, user)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("certificate %q is not a valid client certificate of CA %q: %w", user, ca.Cert.Subject.CommonName, err)
	}
	if time.Until(leaf.Cert.NotAfter) < minValidity {
		return fmt.Errorf("certificate %q expires at %s", user, leaf.Cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("certificate is not PEM (want a CERTIFICATE block)")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("private key is not PEM")
	}
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, nil, fmt.Errorf("private key: unsupported PEM block %q", kb.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("private key cannot sign")
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("private key: %w", err)
	}
	if !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return nil, nil, fmt.Errorf("private key does not belong to certificate %q", cert.Subject.CommonName)
	}
	return cert, signer, nil
}

func sortStrings(s []string) { slices.Sort(s) }
