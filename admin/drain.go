package admin

import (
	"context"
	"net/http"
)

// DrainState is the answer of the drain endpoints.
type DrainState struct {
	Draining    bool `json:"draining"`
	Allocations int  `json:"allocations"` // live allocations left
}

// drain answers POST /api/drain (start draining: new allocations are
// refused, existing ones run on) and DELETE /api/drain (serve normally
// again), and GET /api/drain (the state).
func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		if !s.cfg.Relay.Draining() {
			s.log.Info("draining (admin API): new allocations are refused, existing ones run to their end")
		}
		s.cfg.Relay.SetDraining(true)
	case http.MethodDelete:
		if s.cfg.Relay.Draining() {
			s.log.Info("drain cancelled (admin API): new allocations are accepted again")
		}
		s.cfg.Relay.SetDraining(false)
	}
	writeJSON(w, http.StatusOK, DrainState{Draining: s.cfg.Relay.Draining(), Allocations: s.cfg.Relay.Allocations()})
}

// Drain starts draining the server (undo with on false) and returns the
// state after the change.
func (c *Client) Drain(ctx context.Context, on bool) (DrainState, error) {
	method := http.MethodPost
	if !on {
		method = http.MethodDelete
	}
	var st DrainState
	err := c.do(ctx, method, "/api/drain", nil, &st)
	return st, err
}
