//go:build linux

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/examples"
)

// row is one line of the final table.
type row struct {
	step, expected, seen string
	ok                   bool
}

// Run runs the demo, writing what happens to out; dir holds the bed's
// files (short: unix socket paths live under it).
func Run(ctx context.Context, out io.Writer, dir string) (err error) {
	b, err := bed.New(ctx, bed.Options{Dir: dir, Log: out})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down the bed: %w", cerr))
		}
	}()
	w, err := starwars.New(ctx, b)
	if err != nil {
		return err
	}
	var rows []row
	record := func(step, expected, seen string, ok bool) {
		rows = append(rows, row{step, expected, seen, ok})
		mark := "ok"
		if !ok {
			mark = "UNEXPECTED"
		}
		b.Logf("    %s: %s [%s]", step, seen, mark)
	}
	steps := []func(context.Context, *starwars.World, func(string, string, string, bool)) error{podToPod, globalService, policy}
	for _, s := range steps {
		if err := s(ctx, w, record); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\n==> what was expected, and what was seen")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tEXPECTED\tSEEN\t")
	failed := 0
	for _, r := range rows {
		mark := "ok"
		if !r.ok {
			mark, failed = "UNEXPECTED", failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.step, r.expected, r.seen, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d steps did not see what they expected", failed, len(rows))
	}
	fmt.Fprintln(out, "==> demo complete: two clusters, one network")
	return nil
}

func podToPod(ctx context.Context, w *starwars.World, record func(string, string, string, bool)) error {
	w.Bed.Logf("==> pod to pod across clusters, by IP, through WireGuard")
	for _, p := range [][2]string{{"cluster1/x-wing", "cluster2/rebel-base-a"}, {"cluster2/x-wing", "cluster1/rebel-base-b"}} {
		from, to := w.Pod(p[0]), w.Pod(p[1])
		var r workload.DialResult
		err := w.Bed.WaitUntil(ctx, 30*time.Second, from.String()+" -> "+to.String(), func(ctx context.Context) (bool, string) {
			var err error
			r, err = from.Dial(ctx, workload.DialRequest{Addr: to.Addr(), Message: "hello from " + p[0], TimeoutMS: 1000})
			if err != nil {
				return false, err.Error()
			}
			return r.Error == "", r.Error
		})
		seen := "answer: " + r.Reply
		if err != nil {
			seen = r.Error
		}
		record(fmt.Sprintf("%s -> %s (%s)", p[0], p[1], to.IP), "answered by "+p[1], seen, err == nil && strings.HasPrefix(r.Reply, to.String()))
	}
	return nil
}

func globalService(ctx context.Context, w *starwars.World, record func(string, string, string, bool)) error {
	c1 := w.Bed.Cluster("cluster1")
	xwing, svc := w.Pod("cluster1/x-wing"), w.RebelBase["cluster1"]
	check := func(step, expected string, clusters ...string) {
		w.Bed.Logf("==> %s", step)
		tally, err := w.WaitTally(ctx, xwing, svc, 10, 60*time.Second, expected, func(t starwars.Tally) bool { return t.Only(clusters...) })
		seen := tally.String()
		if err != nil && tally == nil {
			seen = err.Error()
		}
		record(step, expected, "answers by cluster: "+seen, err == nil)
	}
	w.Bed.Logf("==> the global Service rebel-base (examples/global-service.yaml) at %s in cluster1", svc)
	check("rebel-base, affinity local", "10 connections, all answered by cluster1", "cluster1")
	setReady := func(ready bool) error {
		for _, n := range []string{"rebel-base-a", "rebel-base-b"} {
			if err := w.Pod("cluster1/"+n).SetReady(ctx, ready); err != nil {
				return err
			}
		}
		return nil
	}
	w.Bed.Logf("    cluster1's rebel-base pods stop being ready (their readiness probe fails)")
	if err := setReady(false); err != nil {
		return err
	}
	check("cluster1's backends not ready", "all answered by cluster2", "cluster2")
	if err := setReady(true); err != nil {
		return err
	}
	check("cluster1's backends ready again", "all answered by cluster1", "cluster1")
	if err := c1.Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{"service.cilium.io/affinity": "none"}); err != nil {
		return err
	}
	check("affinity none", "answered by both clusters", "cluster1", "cluster2")
	return nil
}

func policy(ctx context.Context, w *starwars.World, record func(string, string, string, bool)) error {
	w.Bed.Logf("==> Cilium's cross-cluster policy example (examples/cross-cluster-policy.yaml, kind changed)")
	raw, err := fs.ReadFile(examples.Manifests, "cross-cluster-policy.yaml")
	if err != nil {
		return err
	}
	docs := strings.Split(string(raw), "\n---\n")
	for i, c := range []string{"cluster1", "cluster2"} {
		if err := w.Bed.Cluster(c).Apply(ctx, docs[i]); err != nil {
			return err
		}
	}
	target := w.Pod("cluster2/rebel-base-a")
	for _, v := range []struct {
		from  string
		allow bool
	}{{"cluster1/tie-fighter", false}, {"cluster1/x-wing", true}} {
		from := w.Pod(v.from)
		var r workload.DialResult
		err := w.Bed.WaitUntil(ctx, 30*time.Second, fmt.Sprintf("%s -> %s allowed=%v", v.from, target, v.allow), func(ctx context.Context) (bool, string) {
			var err error
			r, err = from.Dial(ctx, workload.DialRequest{Addr: target.Addr(), Message: "hello from " + v.from, TimeoutMS: 1000})
			if err != nil {
				return false, err.Error()
			}
			return (r.Error == "") == v.allow, r.Reply + r.Error
		})
		expected, seen := "refused (dropped by policy)", "dropped: "+r.Error
		if v.allow {
			expected, seen = "answered by cluster2/rebel-base-a", "answer: "+r.Reply
		}
		record(v.from+" -> cluster2/rebel-base-a", expected, seen, err == nil)
		if !v.allow {
			d, err := target.Node.FindDrop(ctx, from.IP.String(), target.Addr())
			seen := d.String()
			if err != nil {
				seen = err.Error()
			}
			record("the drop, as "+target.Node.Name+"'s agent recorded it", "ingress, tie-fighter's identity (cluster1) -> rebel-base's (cluster2), policy-denied",
				seen, err == nil && d.Reason == "policy-denied" && d.SrcCluster == "cluster1" && d.DstCluster == "cluster2" && d.SrcIdentity != 0 && d.DstIdentity != 0)
		}
	}
	return nil
}
