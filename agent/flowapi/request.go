package flowapi

import (
	"net/url"
	"strconv"
	"time"
)

// Request is GET /v1/flows: which flows, and whether to follow new ones.
type Request struct {
	// Last, when positive, keeps the newest Last of the held flows that
	// Since and Filter select; with Follow and no Last or Since, no held
	// flow is sent, only new ones.
	Last int
	// Since, when set, keeps flows after it.
	Since time.Time
	// Follow keeps the answer open, sending new flows as they come.
	Follow bool
	Filter Filter
}

// Request parameters.
const (
	ParamLast   = "last"
	ParamSince  = "since"
	ParamFollow = "follow"
)

// ParseRequest reads a Request from the query of GET /v1/flows.
func ParseRequest(q url.Values) (Request, error) {
	var r Request
	if v := q.Get(ParamLast); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return r, &ParamError{Param: ParamLast, Value: v, Want: "want a positive number of flows"}
		}
		r.Last = n
	}
	if v := q.Get(ParamSince); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return r, &ParamError{Param: ParamSince, Value: v, Want: "want an RFC 3339 time such as 2006-01-02T15:04:05Z"}
		}
		r.Since = t
	}
	if v := q.Get(ParamFollow); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return r, &ParamError{Param: ParamFollow, Value: v, Want: "want true or false"}
		}
		r.Follow = b
	}
	f, err := ParseFilter(q)
	if err != nil {
		return r, err
	}
	r.Filter = f
	return r, nil
}

// Values returns the query of r: ParseRequest(r.Values()) is r.
func (r Request) Values() url.Values {
	q := r.Filter.Values()
	if r.Last > 0 {
		q.Set(ParamLast, strconv.Itoa(r.Last))
	}
	if !r.Since.IsZero() {
		q.Set(ParamSince, r.Since.Format(time.RFC3339Nano))
	}
	if r.Follow {
		q.Set(ParamFollow, "true")
	}
	return q
}

// Line is one line of the answer of GET /v1/flows (newline-delimited
// JSON): a flow, or the status of the agent's record of flows.
type Line struct {
	Flow   *Flow   `json:"flow,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Status is the state of an agent's record of flows: the first line of
// every answer; when following, the line after the held flows (marking
// their end), then a line whenever a count of lost flows grew (at most
// about once a second).
type Status struct {
	Node string    `json:"node"`
	Time time.Time `json:"time"`
	// Capacity is the size of the ring of flows (--flows-capacity), Held
	// the number of flows it holds, Seen the number recorded since the
	// agent started.
	Capacity int    `json:"capacity"`
	Held     int    `json:"held"`
	Seen     uint64 `json:"seen"`
	Lost     Lost   `json:"lost"`
}

// Lost counts events that did not become flows a reader can see, since
// the agent started.
type Lost struct {
	// Datapath: events the kernel's ring buffer had no room for (the
	// agent did not read them fast enough).
	Datapath uint64 `json:"datapath"`
	// Undecodable: events that did not decode (agent and datapath of
	// different builds).
	Undecodable uint64 `json:"undecodable"`
	// Overwritten: flows the ring overwrote with newer ones (older than
	// its oldest flow; normal once it is full).
	Overwritten uint64 `json:"overwritten"`
	// Stream: flows this answer skipped because it was read more slowly
	// than the ring overwrote them (follow only).
	Stream uint64 `json:"stream,omitempty"`
}
