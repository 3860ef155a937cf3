package install_test

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/cli/install"
	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/etcdserver"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// rendered is the chart rendered for namespace ns, split by kind/name.
type rendered struct {
	docs map[string]string
	t    *testing.T
}

func renderWith(t *testing.T, ns string, v map[string]any) rendered {
	t.Helper()
	out, err := install.Render(t.Context(), load(t), ns, v)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{docs: docs(t, out), t: t}
}

// mountOf returns the mount path of the container's volume whose source is
// Secret secret ("" when none is mounted).
func mountOf(pod corev1.PodSpec, c corev1.Container, secret string) string {
	for _, v := range pod.Volumes {
		if v.Secret == nil || v.Secret.SecretName != secret {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				return m.MountPath
			}
		}
	}
	return ""
}

func argValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
			return v, true
		}
		if a == "--"+flag {
			return "true", true
		}
	}
	return "", false
}

// TestRenderCacheMode: with the cache on (the default), the chart gives the
// clustermesh-apiserver --cache, the peers connect writes (mounted where
// the agents mount them and where the ConfigMap says, since the peer
// configs name their certificate files under that path) and --cache-ttl;
// the agents --clustermesh-cache-config naming a file of a mounted Secret
// whose etcd client config is complete: an endpoint the server certificate
// install issues covers, files of that Secret, and a certificate of the
// local user. That config, its files written where the kubelet would mount
// them, logs into a real etcd bootstrapped as the clustermesh-apiserver
// does as the read-only local user: it reads the cache, writes nothing.
// With the cache off, none of it is rendered and the ConfigMap says so
// (connect and status read it).
func TestRenderCacheMode(t *testing.T) {
	const ns = "mesh-system"
	ep := "https://127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t))
	dns, ips, err := install.ServerNames(ns, []string{ep})
	if err != nil {
		t.Fatal(err)
	}
	certs, _, err := install.EnsureCerts("c1", nil, dns, ips)
	if err != nil {
		t.Fatal(err)
	}
	v := values()
	v["apiserver"] = map[string]any{"etcdEndpoints": []any{ep}}
	v["tls"] = certs.Values()
	r := renderWith(t, ns, v)

	cm := decode[corev1.ConfigMap](t, r.docs, "ConfigMap/"+mesh.ConfigMapName)
	if cm.Data[mesh.KeyCache] != "true" {
		t.Errorf("ConfigMap %s = %q, want true (connect and status read the mode there)", mesh.KeyCache, cm.Data[mesh.KeyCache])
	}
	meshDir := cm.Data[mesh.KeyMeshConfigDir]

	dep := decode[appsv1.Deployment](t, r.docs, "Deployment/"+mesh.APIServerName)
	api := dep.Spec.Template.Spec.Containers[0]
	checkFlags(t, "clustermesh-apiserver", api.Args)
	if v, _ := argValue(api.Args, "cache"); v != "true" {
		t.Errorf("apiserver --cache %q, want on: %v", v, api.Args)
	}
	if v, _ := argValue(api.Args, "mesh-config-dir"); v != meshDir {
		t.Errorf("apiserver --mesh-config-dir %q, the ConfigMap's (where connect's peer configs point) %q", v, meshDir)
	}
	if v, ok := argValue(api.Args, "cache-ttl"); !ok || v != "0s" {
		t.Errorf("apiserver --cache-ttl %q (set %v), want the default 0s", v, ok)
	}
	if v, ok := argValue(api.Args, "peer-probe-interval"); !ok || v != "5s" {
		t.Errorf("apiserver --peer-probe-interval %q (set %v), want the default 5s", v, ok)
	}
	if m := mountOf(dep.Spec.Template.Spec, api, mesh.PeersSecretName); m != meshDir {
		t.Errorf("apiserver mounts Secret %s at %q, want %q", mesh.PeersSecretName, m, meshDir)
	}

	ds := decode[appsv1.DaemonSet](t, r.docs, "DaemonSet/"+mesh.AgentName)
	pod := ds.Spec.Template.Spec
	agent := pod.Containers[0]
	checkFlags(t, "clustermesh-agent", agent.Args)
	if m := mountOf(pod, agent, mesh.PeersSecretName); m != meshDir {
		t.Errorf("agent mounts Secret %s at %q, want %q", mesh.PeersSecretName, m, meshDir)
	}
	cfgPath, ok := argValue(agent.Args, "clustermesh-cache-config")
	if !ok {
		t.Fatalf("agent args lack --clustermesh-cache-config: %v", agent.Args)
	}
	dir := mountOf(pod, agent, mesh.LocalSecretName)
	if dir == "" || path.Dir(cfgPath) != dir {
		t.Fatalf("--clustermesh-cache-config=%s is not in the mount of Secret %s (%q)", cfgPath, mesh.LocalSecretName, dir)
	}
	local := decode[corev1.Secret](t, r.docs, "Secret/"+mesh.LocalSecretName)
	if _, ok := local.Data[path.Base(cfgPath)]; !ok {
		t.Fatalf("Secret %s has no key %s", mesh.LocalSecretName, path.Base(cfgPath))
	}

	// The files as the kubelet mounts them, under root.
	root := t.TempDir()
	for k, b := range local.Data {
		p := filepath.Join(root, dir, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cfg kvstore.ClientConfig
	if err := yaml.UnmarshalStrict(local.Data[path.Base(cfgPath)], &cfg); err != nil {
		t.Fatalf("%s: %v", cfgPath, err)
	}
	for _, f := range []*string{&cfg.TrustedCAFile, &cfg.CertFile, &cfg.KeyFile} {
		if path.Dir(*f) != dir {
			t.Errorf("%s names %s, outside the Secret's mount %s", cfgPath, *f, dir)
		}
		*f = filepath.Join(root, *f)
	}
	if len(cfg.Endpoints) != 1 {
		t.Fatalf("%s endpoints %v, want the clustermesh-apiserver Service", cfgPath, cfg.Endpoints)
	}
	u, err := url.Parse(cfg.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	svc := decode[corev1.Service](t, r.docs, "Service/"+mesh.APIServerName)
	if u.Scheme != "https" || !slices.Contains(dns, u.Hostname()) || u.Port() != strconv.Itoa(int(svc.Spec.Ports[0].Port)) {
		t.Errorf("cache endpoint %s: want https, a name of the server certificate %v, the Service's port %d", u, dns, svc.Spec.Ports[0].Port)
	}

	// A real etcd with install's certificates, bootstrapped as the
	// clustermesh-apiserver does; the agents' config reaches it at ep
	// (the Service's name does not resolve here).
	etcdDir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(etcdDir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srv, err := etcdserver.StartServer(t.Context(), etcdserver.ServerConfig{
		DataDir: filepath.Join(etcdDir, "data"), ListenClientURLs: []string{ep},
		CertFile: write("server.crt", certs.ServerCert), KeyFile: write("server.key", certs.ServerKey), TrustedCAFile: write("ca.crt", certs.CACert),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	admin, err := kvstore.Connect(t.Context(), kvstore.ClientConfig{Endpoints: []string{ep}, TrustedCAFile: filepath.Join(etcdDir, "ca.crt"),
		CertFile: write("admin.crt", certs.AdminCert), KeyFile: write("admin.key", certs.AdminKey)})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	paths := schema.DefaultPaths()
	if err := kvstore.BootstrapAuth(t.Context(), admin.Etcd(), paths, "c1"); err != nil {
		t.Fatal(err)
	}
	cached := paths.Cache("c2").Node("c2", "n1")
	if _, err := admin.Etcd().Put(t.Context(), cached, "{}"); err != nil {
		t.Fatal(err)
	}
	cfg.Endpoints = []string{ep}
	agentCli, err := kvstore.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("the agents' cache config does not connect: %v", err)
	}
	defer agentCli.Close()
	if resp, err := agentCli.Etcd().Get(t.Context(), cached); err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the agents read %s: %v (%d keys)", cached, err, len(resp.Kvs))
	}
	if _, err := agentCli.Etcd().Put(t.Context(), cached, "spoofed"); err == nil {
		t.Error("the agents' certificate may write the cache: it must be the read-only local user")
	}

	// Off.
	v["apiserver"].(map[string]any)["cache"] = map[string]any{"enabled": false}
	delete(v["tls"].(map[string]any), "local")
	off := renderWith(t, ns, v)
	if cm := decode[corev1.ConfigMap](t, off.docs, "ConfigMap/"+mesh.ConfigMapName); cm.Data[mesh.KeyCache] != "false" {
		t.Errorf("cache off: ConfigMap %s = %q, want false", mesh.KeyCache, cm.Data[mesh.KeyCache])
	}
	if _, ok := off.docs["Secret/"+mesh.LocalSecretName]; ok {
		t.Errorf("cache off: Secret %s rendered", mesh.LocalSecretName)
	}
	dep = decode[appsv1.Deployment](t, off.docs, "Deployment/"+mesh.APIServerName)
	api = dep.Spec.Template.Spec.Containers[0]
	checkFlags(t, "clustermesh-apiserver", api.Args)
	if !slices.Contains(api.Args, "--cache=false") || slices.ContainsFunc(api.Args, func(a string) bool { return strings.HasPrefix(a, "--mesh-config-dir") }) {
		t.Errorf("cache off: apiserver args %v, want --cache=false and no mesh directory", api.Args)
	}
	if m := mountOf(dep.Spec.Template.Spec, api, mesh.PeersSecretName); m != "" {
		t.Errorf("cache off: the apiserver mounts the peers at %s", m)
	}
	ds = decode[appsv1.DaemonSet](t, off.docs, "DaemonSet/"+mesh.AgentName)
	if _, ok := argValue(ds.Spec.Template.Spec.Containers[0].Args, "clustermesh-cache-config"); ok {
		t.Errorf("cache off: the agents read the cache: %v", ds.Spec.Template.Spec.Containers[0].Args)
	}

	// The cache on without the local certificate: named.
	v["apiserver"].(map[string]any)["cache"] = map[string]any{"enabled": true}
	if _, err := install.Render(t.Context(), load(t), ns, v); err == nil || !strings.Contains(err.Error(), "tls.local.cert is required while apiserver.cache.enabled") {
		t.Errorf("cache on without tls.local: %v", err)
	}
}
