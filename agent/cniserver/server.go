// Package cniserver is the agent's side of the CNI plugin's API
// (agent/cniapi, routes /v1/cni/attachments/{containerID}/{ifName}): the
// ADD stores a pod interface's attachment (agent/cnistore) and writes it
// into the state, then waits until the datapath enforces the pod's policy
// on it; the CHECK reports whether it does; the DEL removes the
// attachment. Load puts the stored attachments back into the state when
// the agent starts.
//
// Rules: the handlers are watchers like the others: they write the state's
// attachments table and never touch the datapath, which the policies and
// attachments reconcilers program; an ADD reads their per-object status
// (no kernel read). Changes of attachments are serialized, so that the
// store and the state agree.
package cniserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/agent/cniapi"
	"github.com/clustermesh/clustermesh/agent/cnistore"
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/internal/httpserve"
)

// maxAttachWait bounds how long an ADD waits for the datapath.
const maxAttachWait = 2 * time.Minute

// Objects is the per-object status of a reconciler with
// reconciler.Config.TrackObjects (a *reconciler.Reconciler is one).
type Objects[K comparable, V any] interface {
	// Object returns what the datapath table holds for k.
	Object(k K) reconciler.ObjectStatus[V]
	// Watch returns a channel closed when the reconciler's next pass ends.
	Watch() <-chan struct{}
}

// Config is what the CNI API reads and writes.
type Config struct {
	Node  string // this node's name (in errors)
	State *state.State
	// Store keeps the attachments across restarts (nil: not kept).
	Store *cnistore.Store
	// EndpointNetNS is the network namespace of the pods' host-side
	// interfaces ("": the agent's).
	EndpointNetNS string
	// Policies and Attachments are the policies and attachments
	// reconcilers, whose objects an ADD waits for: the pod's datapath ID
	// and its host interface's index.
	Policies    Objects[uint16, datapath.EndpointPolicy]
	Attachments Objects[int, datapath.Attachment]
}

// Server serves the CNI plugin's routes of the local API.
type Server struct {
	cfg Config
	mu  sync.Mutex // serializes changes of attachments
}

// New returns the CNI API of cfg.
func New(cfg Config) *Server { return &Server{cfg: cfg} }

// Register adds the CNI routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	const path = "/v1/cni/attachments/{containerID}/{ifName}"
	mux.HandleFunc("PUT "+path, s.putAttachment)
	mux.HandleFunc("GET "+path, s.getAttachment)
	mux.HandleFunc("DELETE "+path, s.deleteAttachment)
}

// putAttachment is the CNI ADD: store the attachment, put it in the state
// and wait until the datapath enforces the pod's policy on it.
func (s *Server) putAttachment(w http.ResponseWriter, r *http.Request) {
	var req cniapi.AttachmentRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: not an attachment (JSON of cniapi.AttachmentRequest): %w", err))
		return
	}
	at, err := attachmentOf(r.PathValue("containerID"), r.PathValue("ifName"), req, s.cfg.EndpointNetNS)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.storeAttachment(at); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	wait := maxAttachWait
	if v := r.URL.Query().Get(cniapi.WaitParam); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s=%q: want a positive duration", cniapi.WaitParam, v))
			return
		}
		wait = min(d, wait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	st, err := s.waitAttached(ctx, at)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, st)
}

func (s *Server) storeAttachment(at state.AttachmentRow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Store != nil {
		if err := s.cfg.Store.Put(at); err != nil {
			return err
		}
	}
	return s.cfg.State.Update(func(t *state.WriteTxn) error { return t.UpsertAttachment(at) })
}

// getAttachment is the CNI CHECK.
func (s *Server) getAttachment(w http.ResponseWriter, r *http.Request) {
	key := datapath.AttachmentKey(r.PathValue("containerID"), r.PathValue("ifName"))
	at, ok := s.cfg.State.Snapshot().Attachment(key)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no attachment %s on this node", key))
		return
	}
	st, _ := s.attachmentStatus(at)
	writeJSON(w, st)
}

// deleteAttachment is the CNI DEL; the reconciler detaches.
func (s *Server) deleteAttachment(w http.ResponseWriter, r *http.Request) {
	key := datapath.AttachmentKey(r.PathValue("containerID"), r.PathValue("ifName"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Store != nil {
		if err := s.cfg.Store.Delete(key); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	if err := s.cfg.State.Update(func(t *state.WriteTxn) error { return t.DeleteAttachment(key) }); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) { httpserve.WriteJSON(w, http.StatusOK, v) }

// writeError answers code with the body of every error of the agent's
// API, cniapi.Error.
func writeError(w http.ResponseWriter, code int, err error) {
	httpserve.WriteJSON(w, code, cniapi.Error{Error: err.Error()})
}
