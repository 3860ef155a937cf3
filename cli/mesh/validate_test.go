package mesh

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/internal/pki"
)

func settings(ctx, name string, id, maxc uint32, cidrs ...string) *Settings {
	s := &Settings{Cluster: &Cluster{Context: ctx, Namespace: "kube-system"}, Name: name, ID: id, MaxConnectedClusters: maxc}
	for _, c := range cidrs {
		s.PodCIDRs = append(s.PodCIDRs, netip.MustParsePrefix(c))
	}
	return s
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []*Settings
		want []string // empty: valid
	}{
		{"distinct", []*Settings{settings("a", "c1", 1, 255, "10.1.0.0/16"), settings("b", "c2", 2, 255, "10.2.0.0/16")}, nil},
		{"same name", []*Settings{settings("a", "c1", 1, 255, "10.1.0.0/16"), settings("b", "c1", 2, 255, "10.2.0.0/16")},
			[]string{`context "a"`, `context "b"`, `cluster-name "c1"`, "--cluster-name"}},
		{"same id", []*Settings{settings("a", "c1", 4, 255, "10.1.0.0/16"), settings("b", "c2", 4, 255, "10.2.0.0/16")},
			[]string{"cluster-id 4", "--cluster-id"}},
		{"max clusters", []*Settings{settings("a", "c1", 1, 255, "10.1.0.0/16"), settings("b", "c2", 2, 511, "10.2.0.0/16")},
			[]string{"max-connected-clusters 255", "has 511", "--max-connected-clusters 511"}},
		{"overlap", []*Settings{settings("a", "c1", 1, 255, "10.0.0.0/8"), settings("b", "c2", 2, 255, "fd00::/64", "10.9.0.0/16")},
			[]string{"10.0.0.0/8", "10.9.0.0/16", "overlapping"}},
		{"three, one conflict", []*Settings{settings("a", "c1", 1, 255, "10.1.0.0/16"), settings("b", "c2", 2, 255, "10.2.0.0/16"),
			settings("c", "c3", 2, 255, "10.3.0.0/16")}, []string{"cluster c2", "cluster c3", "cluster-id 2"}},
		{"same context", []*Settings{settings("a", "c1", 1, 255, "10.1.0.0/16"), settings("a", "c2", 2, 255, "10.2.0.0/16")},
			[]string{"given twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.in)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("error %v is not ErrConflict", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestCerts(t *testing.T) {
	ca, err := pki.NewCA("c1 CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other CA", 0)
	key, _ := ca.KeyPEM()
	if _, err := ParseCA(ca.CertPEM(), key); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := other.KeyPEM()
	if _, err := ParseCA(ca.CertPEM(), otherKey); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched CA key: %v", err)
	}
	if _, err := ParseCA([]byte("garbage"), key); err == nil || !strings.Contains(err.Error(), "not PEM") {
		t.Errorf("garbage CA: %v", err)
	}
	leaf, _ := ca.Issue(pki.LeafOptions{CommonName: "remote-c2", Client: true})
	lk, _ := leaf.KeyPEM()
	parsed, err := ParseLeaf(leaf.CertPEM(), lk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(leaf.CertPEM(), lk); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: %v", err)
	}
	for _, tc := range []struct {
		ca   *pki.CA
		user string
		min  time.Duration
		want string
	}{
		{ca, "remote-c2", 0, ""},
		{ca, "remote-c3", 0, "common name"},
		{other, "remote-c2", 0, "not a valid client certificate"},
		{ca, "remote-c2", 2 * 365 * 24 * time.Hour, "expires"},
	} {
		err := VerifyLeaf(parsed, tc.ca, tc.user, tc.min)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("VerifyLeaf(%s, %s, %v): %v, want %q", tc.ca.Cert.Subject.CommonName, tc.user, tc.min, err, tc.want)
		}
	}
}
