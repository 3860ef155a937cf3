package localapi

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// DropsResponse is GET /v1/drops: the dropped flows of GET /v1/flows in
// the form GET /v1/drops always had.
type DropsResponse struct {
	// Drops are the most recent drops of the datapath, oldest first.
	Drops []DropRecord `json:"drops"`
	// Overwritten counts the flows (drops and forwarded ones) that newer
	// ones pushed out of the bounded ring (--flows-capacity) since the
	// agent started.
	Overwritten uint64 `json:"overwritten"`
}

// DropRecord is one dropped packet.
type DropRecord struct {
	// Time is when the kernel dropped the packet.
	Time time.Time `json:"time"`
	// Direction is "ingress" (towards the endpoint) or "egress" (from it).
	Direction string `json:"direction"`
	// Reason is the datapath's reason (bpf.Reason), e.g. "policy-denied".
	Reason string         `json:"reason"`
	Src    netip.AddrPort `json:"src"`
	Dst    netip.AddrPort `json:"dst"`
	// Protocol is the IP protocol number (6 TCP, 17 UDP, 1 ICMP).
	Protocol uint8 `json:"protocol"`
	// SrcIdentity and DstIdentity are the security identities of the
	// packet's source and destination.
	SrcIdentity uint32 `json:"srcIdentity"`
	DstIdentity uint32 `json:"dstIdentity"`
	// SrcCluster and DstCluster are the clusters of the ends, when the
	// agent knew them at the time of the drop.
	SrcCluster string `json:"srcCluster,omitempty"`
	DstCluster string `json:"dstCluster,omitempty"`
	// EndpointID is the datapath ID of the endpoint whose policy dropped
	// the packet.
	EndpointID uint16 `json:"endpointID"`
}

// DropsQuery selects drops: since (when set) and the newest Limit (when
// positive).
type DropsQuery struct {
	Since time.Time
	Limit int
}

// Drops is what GET /v1/drops answers.
func (a *API) Drops(q DropsQuery) (DropsResponse, error) {
	if a.cfg.Flows == nil {
		return DropsResponse{}, ErrFlowsNotRecorded
	}
	dropped := func(f *flowapi.Flow) bool { return f.Verdict == flowapi.VerdictDropped }
	fs, _ := a.cfg.Flows.Ring().Last(q.Limit, q.Since, dropped)
	out := DropsResponse{Drops: make([]DropRecord, 0, len(fs)), Overwritten: a.cfg.Flows.Ring().Stats().Overwritten}
	for i := range fs {
		out.Drops = append(out.Drops, dropRecord(&fs[i]))
	}
	return out, nil
}

func dropRecord(f *flowapi.Flow) DropRecord {
	return DropRecord{
		Time: f.Time, Direction: f.Direction, Reason: f.Reason, Protocol: uint8(f.Protocol),
		Src: netip.AddrPortFrom(f.Src.IP, f.Src.Port), Dst: netip.AddrPortFrom(f.Dst.IP, f.Dst.Port),
		SrcIdentity: f.Src.Identity, DstIdentity: f.Dst.Identity, SrcCluster: f.Src.Cluster, DstCluster: f.Dst.Cluster,
		EndpointID: f.EndpointID,
	}
}

// getDrops serves GET /v1/drops[?since=<RFC3339>][&limit=N].
func (a *API) getDrops(w http.ResponseWriter, r *http.Request) {
	q, err := dropsQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	resp, err := a.Drops(q)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, resp)
}

// dropsQuery parses the query parameters of GET /v1/drops.
func dropsQuery(r *http.Request) (DropsQuery, error) {
	var q DropsQuery
	params := r.URL.Query()
	if v := params.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return q, fmt.Errorf("since=%q: want an RFC 3339 time such as 2006-01-02T15:04:05Z (the time of the last drop seen)", v)
		}
		q.Since = t
	}
	if v := params.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("limit=%q: want a positive number of drops", v)
		}
		q.Limit = n
	}
	return q, nil
}
