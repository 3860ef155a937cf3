package localapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/clustermesh/clustermesh/agent/drops"
)

// DropsResponse is GET /v1/drops.
type DropsResponse struct {
	// Drops are the most recent drops of the datapath, oldest first.
	Drops []drops.Record `json:"drops"`
	// Overwritten counts the drops that newer ones pushed out of the
	// bounded record (--drops-capacity) since the agent started.
	Overwritten uint64 `json:"overwritten"`
}

// ErrDropsNotRecorded is returned by Drops when the agent records no drops
// (--datapath=none has no datapath to drop anything).
var ErrDropsNotRecorded = errors.New("drops are recorded only with --datapath=bpf")

// Drops is what GET /v1/drops answers.
func (a *API) Drops(q drops.Query) (DropsResponse, error) {
	if a.cfg.Drops == nil {
		return DropsResponse{}, ErrDropsNotRecorded
	}
	recs, overwritten := a.cfg.Drops(q)
	return DropsResponse{Drops: recs, Overwritten: overwritten}, nil
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
func dropsQuery(r *http.Request) (drops.Query, error) {
	var q drops.Query
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
