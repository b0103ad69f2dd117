package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/postern/postern/relay"
)

// Session is one live allocation as the sessions API reports it.
type Session struct {
	ID uint64 `json:"id"`
	// User is who the allocation counts against (for a TURN REST
	// credential, the USER part); Username is the USERNAME as sent.
	User     string `json:"user"`
	Username string `json:"username"`
	// Client is the client's address as the server sees it.
	Client string `json:"client"`
	// Transport is the client's transport: udp, tcp or tls.
	Transport string `json:"transport"`
	// Listener is the listener it came through, e.g. "udp://[::]:3478".
	Listener string `json:"listener"`
	// Relayed is the relayed address advertised to the client.
	Relayed string    `json:"relayed"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// AgeSeconds and LifetimeLeftSeconds are computed by the server, so
	// that the client's clock does not matter.
	AgeSeconds          int64        `json:"age_seconds"`
	LifetimeLeftSeconds int64        `json:"lifetime_left_seconds"`
	Permissions         []Permission `json:"permissions"`
	Channels            []Channel    `json:"channels"`
	// ToPeer is what the client sent to its peers through the relay,
	// ToClient what the peers sent back.
	ToPeer   Traffic `json:"to_peer"`
	ToClient Traffic `json:"to_client"`
}

// Permission is a live permission (RFC 8656 §9): a peer IP address.
type Permission struct {
	Peer    string    `json:"peer"`
	Expires time.Time `json:"expires"`
}

// Channel is a live channel binding (RFC 8656 §12).
type Channel struct {
	Number  uint16    `json:"number"`
	Peer    string    `json:"peer"`
	Expires time.Time `json:"expires"`
}

// Traffic is packets and bytes relayed in one direction.
type Traffic struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// SessionList is the body of GET /api/sessions.
type SessionList struct {
	// Node names the node of a fleet that answered (Config.Fleet);
	// absent on a node alone.
	Node     string    `json:"node,omitempty"`
	Sessions []Session `json:"sessions"`
}

// KickResult is the body of a successful DELETE on /api/sessions.
type KickResult struct {
	Kicked int `json:"kicked"`
}

// errorBody is the body of every error answer of the API.
type errorBody struct {
	Error string `json:"error"`
}

// newSession converts a relay session at now.
func newSession(s relay.Session, now time.Time) Session {
	out := Session{
		ID:                  s.ID,
		User:                s.User,
		Username:            s.Username,
		Client:              s.FiveTuple.Client.String(),
		Transport:           s.FiveTuple.Transport.String(),
		Listener:            s.Listener,
		Relayed:             s.Relayed.String(),
		Created:             s.Created.UTC(),
		Expires:             s.Expires.UTC(),
		AgeSeconds:          int64(now.Sub(s.Created) / time.Second),
		LifetimeLeftSeconds: max(int64(s.Expires.Sub(now)/time.Second), 0),
		Permissions:         []Permission{},
		Channels:            []Channel{},
		ToPeer:              Traffic(s.ToPeer),
		ToClient:            Traffic(s.ToClient),
	}
	for _, p := range s.Permissions {
		out.Permissions = append(out.Permissions, Permission{Peer: p.Peer.String(), Expires: p.Expires.UTC()})
	}
	for _, c := range s.Channels {
		out.Channels = append(out.Channels, Channel{Number: c.Number, Peer: c.Peer.String(), Expires: c.Expires.UTC()})
	}
	return out
}

// listSessions answers GET /api/sessions[?user=U], oldest first.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	list := SessionList{Sessions: []Session{}}
	if s.cfg.Fleet != nil {
		list.Node = s.cfg.Fleet.Name()
	}
	for _, ss := range s.cfg.Relay.Sessions(r.URL.Query().Get("user")) {
		list.Sessions = append(list.Sessions, newSession(ss, now))
	}
	writeJSON(w, http.StatusOK, list)
}

// kickID answers DELETE /api/sessions/{id}.
func (s *Server) kickID(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("session ID %q is not a number: take it from GET /api/sessions", r.PathValue("id")))
		return
	}
	if !s.cfg.Relay.Kick(id) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no live session with ID %d (it may have ended already)", id))
		return
	}
	writeJSON(w, http.StatusOK, KickResult{Kicked: 1})
}

// kickUser answers DELETE /api/sessions?user=U. Without a user it refuses:
// ending every session at once is a restart, not a kick.
func (s *Server) kickUser(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		writeError(w, http.StatusBadRequest, "name the user: DELETE /api/sessions?user=NAME (or /api/sessions/ID for one session)")
		return
	}
	writeJSON(w, http.StatusOK, KickResult{Kicked: s.cfg.Relay.KickUser(user)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}
