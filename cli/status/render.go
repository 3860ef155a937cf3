package status

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes the report for a terminal.
func WriteText(w io.Writer, r Report) error {
	var b strings.Builder
	mark := func(ok bool) string {
		if ok {
			return "OK  "
		}
		return "FAIL"
	}
	fmt.Fprintf(&b, "Cluster:     %s (ID %d)\n", r.Cluster, r.ClusterID)
	a := r.APIServer
	var exported []string
	for _, k := range Kinds {
		if a.Exported[k] {
			exported = append(exported, k)
		}
	}
	fmt.Fprintf(&b, "%s apiserver: %d/%d replicas ready, etcd %s, cluster config %s, exported [%s]\n", mark(a.Ready),
		a.ReadyReplicas, a.Replicas, yesNo(a.EtcdReachable, "reachable", "UNREACHABLE"),
		yesNo(a.ClusterConfig, "written", "MISSING"), strings.Join(exported, " "))
	for _, c := range a.Cache {
		var synced, entries []string
		for _, k := range Kinds {
			if c.Synced[k] {
				synced = append(synced, k)
			}
			entries = append(entries, fmt.Sprintf("%s %d", k, c.Entries[k]))
		}
		conn, ok := "", c.Complete()
		if c.Connection != nil {
			conn = "connected, "
			if !c.Connection.Connected {
				conn, ok = "NOT CONNECTED, ", false
				if t := c.Connection.LastFailureTime; !t.IsZero() {
					conn = "NOT CONNECTED since " + t.Format(time.RFC3339) + ", "
				}
			}
		}
		fmt.Fprintf(&b, "%s cache:     peer %s (ID %d): %ssynced [%s]; entries %s\n", mark(ok), c.Name, c.ClusterID, conn,
			strings.Join(synced, " "), strings.Join(entries, ", "))
	}
	fmt.Fprintf(&b, "     peers:     %d configured [%s]\n", len(r.Configured), strings.Join(r.Configured, " "))
	fmt.Fprintf(&b, "%s agents:    %d/%d answered; peers connected per node: min %d, avg %g, max %d\n",
		mark(r.Nodes > 0 && r.Answered == r.Nodes), r.Answered, r.Nodes, r.ConnectedPeers.Min, r.ConnectedPeers.Avg, r.ConnectedPeers.Max)
	for _, p := range r.Peers {
		var synced []string
		for _, k := range Kinds {
			synced = append(synced, fmt.Sprintf("%s %d/%d", k, p.Synced[k], r.Nodes))
		}
		ok := p.Configured && p.Ready == r.Nodes && r.Nodes > 0
		state := ""
		if !p.Configured {
			state = " (removed from the mesh Secret)"
		}
		switch {
		case p.ThroughCache == r.Nodes && r.Nodes > 0:
			state += " through the cache"
		case p.ThroughCache > 0:
			state += fmt.Sprintf(" through the cache on %d/%d nodes", p.ThroughCache, r.Nodes)
		}
		fmt.Fprintf(&b, "%s peer %s (ID %d)%s: connected on %d/%d nodes, ready on %d/%d; synced: %s; rejected entries: %d\n",
			mark(ok), p.Name, p.ClusterID, state, p.Connected, r.Nodes, p.Ready, r.Nodes, strings.Join(synced, ", "), p.Rejected)
	}
	var vs []string
	for _, v := range r.Versions {
		vs = append(vs, fmt.Sprintf("%s on %d", v.Version, len(v.Nodes)))
	}
	fmt.Fprintf(&b, "     versions:  agents %s\n", strings.Join(vs, ", "))
	writeProblems(&b, "Errors", r.Errors)
	writeProblems(&b, "Warnings", r.Warnings)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeProblems writes a titled list of problems, if any.
func writeProblems(b *strings.Builder, title string, problems []Problem) {
	if len(problems) > 0 {
		fmt.Fprintf(b, "%s:\n", title)
		for _, e := range problems {
			var where []string
			if e.Node != "" {
				where = append(where, "node "+e.Node)
			}
			if e.Peer != "" {
				where = append(where, "peer "+e.Peer)
			}
			prefix := ""
			if len(where) > 0 {
				prefix = strings.Join(where, ", ") + ": "
			}
			fmt.Fprintf(b, "  - %s%s\n", prefix, e.Message)
			if e.Hint != "" {
				fmt.Fprintf(b, "    hint: %s\n", e.Hint)
			}
		}
	}
}

func yesNo(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

// Wait builds reports every interval until one is Complete, and returns
// it; once timeout has passed it returns the last report and an error
// naming what is missing. An attempt running at the deadline finishes (its
// own requests have their own timeouts). progress (may be nil) gets one
// line per attempt.
func Wait(ctx context.Context, get func(context.Context) (Report, error), timeout, interval time.Duration, progress io.Writer) (Report, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last Report
	var lastErr error
	var missing []string
	for {
		r, err := get(ctx)
		if err == nil {
			last, lastErr = r, nil
			var ok bool
			if ok, missing = r.Complete(); ok {
				return r, nil
			}
		} else {
			lastErr = err
			missing = []string{err.Error()}
		}
		if progress != nil {
			fmt.Fprintf(progress, "waiting for the mesh of %s: %s\n", cmp.Or(last.Cluster, "this cluster"), strings.Join(missing, "; "))
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("stopped waiting (%w), still missing: %s", ctx.Err(), strings.Join(missing, "; "))
		case <-deadline.C:
			if lastErr != nil && last.Cluster == "" {
				return last, fmt.Errorf("timed out after %v: %w", timeout, lastErr)
			}
			return last, fmt.Errorf("timed out after %v, still missing: %s", timeout, strings.Join(missing, "; "))
		case <-t.C:
		}
	}
}
