package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// Against an external 3-member etcd cluster the export survives the loss of
// one member.
func TestExternalEtcdSurvivesMemberLoss(t *testing.T) {
	members := kvtest.StartCluster(t, 3)
	urls := make([]string, len(members))
	for i, m := range members {
		urls[i] = m.URL
	}
	cfgFile := filepath.Join(t.TempDir(), "etcd-config.yaml")
	if err := os.WriteFile(cfgFile, []byte("endpoints: ["+strings.Join(urls, ", ")+"]\ndial-timeout: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newStoppedBed(t, func(c *server.Config) {
		c.EtcdDataDir, c.EtcdConfig = "", cfgFile
		c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile, c.AdminCertFile, c.AdminKeyFile = "", "", "", "", ""
	})
	b.start(t)
	b.admin = kvtest.ConnectConfig(t, kvstore.ClientConfig{Endpoints: urls, RateLimitQPS: -1})
	b.createPod(t, "default", "before", map[string]string{"app": "a"}, "10.1.1.5", "192.168.1.10")
	b.waitSynced(t)
	eventually(t, "pod exported", func() bool { return b.get(t, b.paths.IPDefaultPrefix()+"10.1.1.5") != "" })

	members[0].Stop()
	b.createPod(t, "default", "after", map[string]string{"app": "b"}, "10.1.1.6", "192.168.1.10")
	eventually(t, "pod exported with one member down", func() bool { return b.get(t, b.paths.IPDefaultPrefix()+"10.1.1.6") != "" })
	eventually(t, "new identity exported with one member down", func() bool { return len(b.list(t, b.paths.IdentityIDPrefix())) == 2 })
}
