// Package streamapi lets an operator announce and withdraw static streams on a running origin.
package streamapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/streamname"
)

// Prefix is where the handler is mounted on the admin listener.
const Prefix = "/api/v1/streams"

// maxBody bounds a request body; a stream entry is a few hundred bytes.
const maxBody = 64 << 10

// Registry is what the handler needs from the origin's registrar.
type Registry interface {
	PutStream(s cluster.Stream)
	RemoveStream(name string)
}

// Handler serves GET Prefix, PUT Prefix/NAME and DELETE Prefix/NAME. PUT and DELETE need
// "Authorization: Bearer Token" (see admin.Authorize); with no Token they are disabled (403).
type Handler struct {
	Registry Registry
	Logger   *slog.Logger
	// Token is the admin bearer token; empty disables PUT and DELETE.
	Token string

	mu      sync.Mutex
	streams map[string]cluster.Stream
}

// New returns a handler that starts with the static streams of the config.
func New(reg Registry, static []cluster.Stream, logger *slog.Logger) *Handler {
	h := &Handler{Registry: reg, Logger: logger, streams: map[string]cluster.Stream{}}
	for _, s := range static {
		h.streams[s.Name] = s
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, hasName := strings.CutPrefix(r.URL.EscapedPath(), Prefix+"/")
	if !hasName {
		if r.URL.EscapedPath() != Prefix || r.Method != http.MethodGet {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h.list(w)
		return
	}
	if r.Method == http.MethodPut || r.Method == http.MethodDelete {
		if !admin.Authorize(w, r, h.Token) {
			h.Logger.Warn("stream API refused", "method", r.Method, "remote", r.RemoteAddr, "token_set", h.Token != "")
			return
		}
	}
	if !streamname.Valid(name) {
		http.Error(w, "invalid stream name", http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodPut:
		h.put(w, r, name)
	case http.MethodDelete:
		// The registry call stays under the lock: racing PUT/DELETE of one NAME reach the
		// registry in the order they changed the list.
		h.mu.Lock()
		_, ok := h.streams[name]
		delete(h.streams, name)
		if ok {
			h.Registry.RemoveStream(name)
		}
		h.mu.Unlock()
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h.Logger.Info("stream withdrawn", "name", name)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "PUT, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request, name string) {
	var s cluster.Stream
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &s); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	s.Name = name
	if s.State == "" {
		s.State = cluster.StreamRunning
	}
	if s.State != cluster.StreamRunning && s.State != cluster.StreamOnDemand {
		http.Error(w, "state must be running or ondemand", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.streams[name] = s
	h.Registry.PutStream(s) // under the lock, see DELETE
	h.mu.Unlock()
	h.Logger.Info("stream announced", "name", name, "state", s.State)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) list(w http.ResponseWriter) {
	h.mu.Lock()
	out := make([]cluster.Stream, 0, len(h.streams))
	for _, s := range h.streams {
		out = append(out, s)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b cluster.Stream) int { return strings.Compare(a.Name, b.Name) })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
