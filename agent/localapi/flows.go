package localapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/flows"
)

// ErrFlowsNotRecorded is the answer of GET /v1/flows and /v1/drops when the
// agent records no flows (--datapath=none has no datapath).
var ErrFlowsNotRecorded = errors.New("flows are recorded only with --datapath=bpf")

// statusInterval is how often a stream looks whether a count of lost flows
// grew, to send a status line.
const statusInterval = time.Second

// getFlows serves GET /v1/flows (see flowapi.Request): newline-delimited
// JSON, a status line, then the held flows asked for, then, with
// follow=true, a second status line (the end of the held flows: a reader
// of several agents can merge their histories before it streams) and new
// flows as they come until the client leaves.
func (a *API) getFlows(w http.ResponseWriter, r *http.Request) {
	req, err := flowapi.ParseRequest(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rec := a.cfg.Flows
	if rec == nil {
		writeError(w, http.StatusNotFound, ErrFlowsNotRecorded)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	s := &flowStream{w: w, bw: bufio.NewWriter(w), rec: rec, filter: req.Filter}
	s.enc = json.NewEncoder(s.bw)
	st := rec.Status()
	if !s.line(flowapi.Line{Status: &st}) {
		return
	}
	s.sent = st.Lost
	next := rec.Ring().Next()
	if !req.Follow || req.Last > 0 || !req.Since.IsZero() {
		var held []flowapi.Flow
		held, next = rec.Ring().Last(req.Last, req.Since, s.match)
		for i := range held {
			if !s.flowLine(&held[i]) {
				return
			}
		}
	}
	if !req.Follow {
		s.flush()
		return
	}
	st = rec.Status()
	if !s.line(flowapi.Line{Status: &st}) || !s.flush() {
		return
	}
	s.sent = st.Lost
	s.follow(r, next)
}

// flowStream writes the lines of one answer of GET /v1/flows.
type flowStream struct {
	w      http.ResponseWriter
	bw     *bufio.Writer
	enc    *json.Encoder
	rec    *flows.Recorder
	filter flowapi.Filter
	missed uint64       // flows this stream skipped (Lost.Stream)
	sent   flowapi.Lost // as in the last status line sent
	buf    []byte       // of flowLine
}

func (s *flowStream) match(f *flowapi.Flow) bool { return s.filter.Match(f) }

// line writes l; false when the client is gone.
func (s *flowStream) line(l flowapi.Line) bool { return s.enc.Encode(l) == nil }

// flowLine writes the line of f, as line would, without reflection; false
// when the client is gone.
func (s *flowStream) flowLine(f *flowapi.Flow) bool {
	s.buf = append(s.buf[:0], `{"flow":`...)
	s.buf = append(f.AppendJSON(s.buf), '}', '\n')
	_, err := s.bw.Write(s.buf)
	return err == nil
}

// flush sends what was written; false when the client is gone.
func (s *flowStream) flush() bool {
	if s.bw.Flush() != nil {
		return false
	}
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
	return true
}

// follow sends new flows from sequence number next on until the client
// leaves (or the server stops), and a status line when a count of lost
// flows grew.
func (s *flowStream) follow(r *http.Request, next uint64) {
	ring := s.rec.Ring()
	tick := time.NewTicker(statusInterval)
	defer tick.Stop()
	var buf []flowapi.Flow
	for {
		wake := ring.Wait() // before reading: an Add after the read wakes us
		for {
			if r.Context().Err() != nil {
				return
			}
			var missed uint64
			buf, next, missed = ring.Read(next, s.match, buf[:0])
			s.missed += missed
			for i := range buf {
				if !s.flowLine(&buf[i]) {
					return
				}
			}
			if next >= ring.Next() {
				break
			}
		}
		if !s.flush() {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-wake:
		case <-tick.C:
			if !s.status() {
				return
			}
		}
	}
}

// status sends a status line if the datapath's, the decoder's or this
// stream's losses grew since the last one (not the ring's overwrites: a
// follower saw those flows).
func (s *flowStream) status() bool {
	st := s.rec.Status()
	st.Lost.Stream = s.missed
	if st.Lost.Datapath == s.sent.Datapath && st.Lost.Undecodable == s.sent.Undecodable && st.Lost.Stream == s.sent.Stream {
		return true
	}
	s.sent = st.Lost
	return s.line(flowapi.Line{Status: &st}) && s.flush()
}
