package workload

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DialRequest asks the pod to connect to Addr, send Message (a line) and
// read the answer. Proto is "tcp" (default) or "udp".
type DialRequest struct {
	Proto     string `json:"proto,omitempty"`
	Addr      string `json:"addr"`
	Message   string `json:"message,omitempty"`
	TimeoutMS int    `json:"timeoutMs,omitempty"`
}

// DialResult is what happened: the answer (without its newline), the
// socket's addresses as the pod saw them, or the error.
type DialResult struct {
	Reply  string `json:"reply,omitempty"`
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	// ConnectMicros is how long connect() took (TCP).
	ConnectMicros int64  `json:"connectMicros,omitempty"`
	Error         string `json:"error,omitempty"`
}

// SinkRequest asks the pod to send Bytes to Addr over one TCP connection.
type SinkRequest struct {
	Addr  string `json:"addr"`
	Bytes int64  `json:"bytes"`
}

// SinkResult is what the transfer took.
type SinkResult struct {
	Reply   string  `json:"reply,omitempty"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// ConnResult names a connection the pod holds open.
type ConnResult struct {
	ID     string `json:"id,omitempty"`
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	Error  string `json:"error,omitempty"`
}

// control is the control API: POST /v1/dial, POST /v1/sink, POST /v1/conns
// (open), POST /v1/conns/{id} (exchange a line), DELETE /v1/conns/{id},
// GET /v1/who.
type control struct {
	cfg   Config
	mu    sync.Mutex // guards conns and next
	conns map[string]*heldConn
	next  int
}

type heldConn struct {
	mu sync.Mutex // one exchange at a time
	c  net.Conn
	r  *bufio.Reader
}

func newControl(cfg Config) *control { return &control{cfg: cfg, conns: map[string]*heldConn{}} }

func (s *control) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, h := range s.conns {
		h.c.Close()
		delete(s.conns, id)
	}
}

func (s *control) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/who", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, s.cfg.Who()) })
	mux.HandleFunc("POST /v1/dial", func(w http.ResponseWriter, r *http.Request) {
		var req DialRequest
		if !decode(w, r, &req) {
			return
		}
		reply(w, dial(req))
	})
	mux.HandleFunc("POST /v1/sink", func(w http.ResponseWriter, r *http.Request) {
		var req SinkRequest
		if !decode(w, r, &req) {
			return
		}
		reply(w, sink(req))
	})
	mux.HandleFunc("POST /v1/conns", func(w http.ResponseWriter, r *http.Request) {
		var req DialRequest
		if !decode(w, r, &req) {
			return
		}
		c, err := net.DialTimeout("tcp", req.Addr, time.Until(deadline(req.TimeoutMS)))
		if err != nil {
			reply(w, ConnResult{Error: err.Error()})
			return
		}
		s.mu.Lock()
		s.next++
		id := strconv.Itoa(s.next)
		s.conns[id] = &heldConn{c: c, r: bufio.NewReader(c)}
		s.mu.Unlock()
		reply(w, ConnResult{ID: id, Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
	})
	mux.HandleFunc("POST /v1/conns/{id}", func(w http.ResponseWriter, r *http.Request) {
		var req DialRequest
		if !decode(w, r, &req) {
			return
		}
		s.mu.Lock()
		h := s.conns[r.PathValue("id")]
		s.mu.Unlock()
		if h == nil {
			http.Error(w, "no connection "+r.PathValue("id"), http.StatusNotFound)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		res := DialResult{Local: h.c.LocalAddr().String(), Remote: h.c.RemoteAddr().String()}
		res.Reply, res.Error = exchange(h.c, h.r, req.Message, deadline(req.TimeoutMS))
		reply(w, res)
	})
	mux.HandleFunc("DELETE /v1/conns/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := s.conns[r.PathValue("id")]
		delete(s.conns, r.PathValue("id"))
		s.mu.Unlock()
		if h != nil {
			h.c.Close()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func dial(req DialRequest) DialResult {
	dl := deadline(req.TimeoutMS)
	proto := req.Proto
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return DialResult{Error: fmt.Sprintf("proto %q: want tcp or udp", proto)}
	}
	start := time.Now()
	c, err := net.DialTimeout(proto, req.Addr, time.Until(dl))
	if err != nil {
		return DialResult{Error: err.Error()}
	}
	defer c.Close()
	res := DialResult{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), ConnectMicros: time.Since(start).Microseconds()}
	if proto == "udp" {
		_ = c.SetDeadline(dl)
		if _, err := c.Write([]byte(req.Message)); err != nil {
			res.Error = err.Error()
			return res
		}
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Reply = string(buf[:n])
		return res
	}
	res.Reply, res.Error = exchange(c, bufio.NewReader(c), req.Message, dl)
	return res
}

// exchange sends msg as a line and reads the answer's line.
func exchange(c net.Conn, r *bufio.Reader, msg string, dl time.Time) (string, string) {
	_ = c.SetDeadline(dl)
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprintf(c, "%s\n", strings.ReplaceAll(msg, "\n", " ")); err != nil {
		return "", err.Error()
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err.Error()
	}
	return strings.TrimSuffix(line, "\n"), ""
}

func sink(req SinkRequest) SinkResult {
	if req.Bytes <= 0 {
		return SinkResult{Error: "bytes: want > 0"}
	}
	c, err := net.DialTimeout("tcp", req.Addr, 5*time.Second)
	if err != nil {
		return SinkResult{Error: err.Error()}
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(5 * time.Minute))
	if _, err := fmt.Fprintf(c, "SINK %d\n", req.Bytes); err != nil {
		return SinkResult{Error: err.Error()}
	}
	buf := make([]byte, 256<<10)
	for left := req.Bytes; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:n]); err != nil {
			return SinkResult{Error: err.Error()}
		}
		left -= n
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return SinkResult{Error: err.Error()}
	}
	return SinkResult{Reply: strings.TrimSuffix(line, "\n"), Seconds: time.Since(start).Seconds()}
}

func decode(w http.ResponseWriter, r *http.Request, into any) bool {
	if err := json.NewDecoder(r.Body).Decode(into); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
