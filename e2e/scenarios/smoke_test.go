package scenarios

import (
	"os"
	"testing"

	"github.com/clustermesh/clustermesh/e2e/bed"
)

func TestSmoke(t *testing.T) {
	dir, _ := os.MkdirTemp("", "cmbed")
	b, err := bed.New(t.Context(), bed.Options{Dir: dir, Log: os.Stdout})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { t.Log(b.Close()) }()
	ctx := t.Context()
	c1, err := b.AddCluster(ctx, bed.ClusterSpec{Name: "cluster1", ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := b.AddCluster(ctx, bed.ClusterSpec{Name: "cluster2", ID: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("HOLD") != "" {
		select {}
	}
	p1, err := c1.Nodes[0].AddPod(ctx, "default", "a", map[string]string{"name": "a"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c2.Nodes[1].AddPod(ctx, "default", "b", map[string]string{"name": "b"})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		r, err := p1.Dial(ctx, workloadReq(p2.Addr()))
		t.Log(r, err)
		if r.Error == "" && err == nil {
			break
		}
	}
	if os.Getenv("HOLD") != "" {
		select {}
	}
}
