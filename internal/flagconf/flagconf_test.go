package flagconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("cluster-name: from-file\ncluster-id: 7\nurls: [a, b]\nport: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	name := fs.String("cluster-name", "default", "")
	id := fs.Uint32("cluster-id", 0, "")
	urls := fs.StringSlice("urls", nil, "")
	port := fs.Int("port", 0, "")
	if err := fs.Parse([]string{"--port=9"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_CLUSTER_NAME", "from-env")
	if err := Apply(fs, "TEST", path); err != nil {
		t.Fatal(err)
	}
	if *name != "from-env" || *id != 7 || strings.Join(*urls, "|") != "a|b" || *port != 9 {
		t.Fatalf("got name=%q id=%d urls=%v port=%d", *name, *id, *urls, *port)
	}
}

func TestErrorsNameTheSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("clustr-name: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Uint32("cluster-id", 0, "")
	fs.String("cluster-name", "", "")
	if err := Apply(fs, "T", path); err == nil || !strings.Contains(err.Error(), `"clustr-name"`) {
		t.Fatalf("unknown key: err = %v", err)
	}
	t.Setenv("T_CLUSTER_ID", "seven")
	if err := Apply(fs, "T", ""); err == nil || !strings.Contains(err.Error(), "T_CLUSTER_ID") {
		t.Fatalf("bad env value: err = %v", err)
	}
}
