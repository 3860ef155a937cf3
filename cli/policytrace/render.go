package policytrace

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable writes a Result for people: both ends, each side's verdict
// with its reason and the agent that gave it, the overall verdict.
func WriteTable(w io.Writer, r Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	end := func(e End) string {
		s := e.String()
		if e.Identity != 0 {
			s += fmt.Sprintf("\tidentity %d", e.Identity)
		} else {
			s += "\tidentity unknown"
		}
		if e.Node != "" {
			s += "\tnode " + e.Node
		}
		return s
	}
	fmt.Fprintf(tw, "FROM\t%s\n", end(r.From))
	fmt.Fprintf(tw, "TO\t%s\n", end(r.To))
	fmt.Fprintf(tw, "PORT\t%d/%s\n", r.Port, r.Protocol)
	side := func(name string, s *Side) {
		if s == nil {
			fmt.Fprintf(tw, "%s\tnot evaluated\n", name)
			return
		}
		v := Denied
		if s.Trace.Allowed {
			v = Allowed
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (agent of %s/%s)\n", name, v, s.Trace.Reason, s.Cluster, s.Node)
		if s.Trace.Inconsistent != "" {
			fmt.Fprintf(tw, "\t\tinconsistent: %s\n", s.Trace.Inconsistent)
		}
	}
	side("EGRESS", r.Egress)
	side("INGRESS", r.Ingress)
	fmt.Fprintf(tw, "VERDICT\t%s\n", strings.ToUpper(r.Verdict))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		if _, err := fmt.Fprintf(w, "# %s\n", n); err != nil {
			return err
		}
	}
	return nil
}
