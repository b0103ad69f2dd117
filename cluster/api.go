package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/postern/postern/iceapi"
)

// The fleet's credentials API without a relay (postern api): a process
// that reads the registry and the fleet's secrets (Watch), never writes
// an entry of its own (it is no node: never handed out, never counted,
// deaf to fleet operations), and answers POST /v1/ice-servers with the
// best node for the caller (Pick), /healthz and /readyz.

// Watch reads the registry and the fleet's secrets every Config.Heartbeat
// until ctx is cancelled, without registering this process: the loop of
// a credentials API that relays nothing. A failure is counted, logged
// and retried at the next heartbeat; Pick then works from the registry as
// last read, whose entries age out after Ageing (no node is handed out
// that nobody has heard of for that long).
func (n *Node) Watch(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	for {
		n.read(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read is one round of Watch.
func (n *Node) read(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, max(n.cfg.Timeout*5, n.cfg.Heartbeat/2))
	defer cancel()
	err := n.readRegistry(rctx, time.Now())
	if err == nil {
		err = n.readSecrets(rctx)
	}
	switch {
	case err == nil:
		n.recovered()
	case ctx.Err() == nil: // not a shutdown
		n.failed("reading the registry", err)
	}
}

// ErrNoNode says why the fleet has no node to hand out; it wraps
// iceapi.ErrUnavailable (503).
var ErrNoNode = fmt.Errorf("%w: no node of the fleet is ready (all draining or silent)", iceapi.ErrUnavailable)

// MintRequest is the fleet's iceapi.MintRequestFunc from the registry as
// last read: the URLs of the node(s) Pick chooses for the request, each
// with a TURN REST API credential (EXPIRY:USER, package auth) of the
// first of secrets() (the secret that mints; every node accepts it, the
// fleet sharing its secrets). ErrNoNode when no node is ready.
func (n *Node) MintRequest(secrets func() []string) iceapi.MintRequestFunc {
	return func(r iceapi.Request) (iceapi.Configuration, error) {
		s := secrets()
		if len(s) == 0 {
			return iceapi.Configuration{}, errors.New("cluster: no secret to mint with: add one to auth.secrets or to Redis's " + keySecrets)
		}
		nodes := n.Pick(r.Region, r.Client, r.Servers)
		if len(nodes) == 0 {
			if len(n.Nodes()) == 0 {
				return iceapi.Configuration{}, fmt.Errorf("%w: the fleet's registry lists no node (are the nodes running with this [cluster] redis?)", iceapi.ErrUnavailable)
			}
			return iceapi.Configuration{}, ErrNoNode
		}
		now := time.Now()
		var out iceapi.Configuration
		for _, info := range nodes {
			c := iceapi.RESTConfiguration(info.URLs, s[0], r.User, r.TTL, now)
			out.ICEServers = append(out.ICEServers, c.ICEServers...)
		}
		return out, nil
	}
}

// APIHealth is the body of the API process's /healthz and /readyz.
type APIHealth struct {
	Status string `json:"status"` // "ok", or "unready" (/readyz: no ready node)
	// Nodes and Ready are how many live nodes the registry lists, and
	// how many of them could be handed out.
	Nodes int `json:"nodes"`
	Ready int `json:"ready"`
	// Redis is whether the last read of the registry reached Redis.
	Redis bool `json:"redis"`
}

// NewAPI returns the handler of the fleet's credentials API process:
// POST iceapi.Path answered by cfg (its Mint and MintRequest replaced by
// MintRequest of the fleet's secrets, then fileSecrets), GET /healthz
// (liveness: 200 while the process answers) and GET /readyz (200 when at
// least one node can be handed out, else 503), each with an APIHealth.
// Every other path gets the API's JSON 404.
func (n *Node) NewAPI(cfg iceapi.Config, fileSecrets []string) (http.Handler, error) {
	own := append([]string(nil), fileSecrets...)
	cfg.Mint = nil
	cfg.MintRequest = n.MintRequest(func() []string { return append(n.Secrets(), own...) }) // the fleet's first mints
	h, err := iceapi.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("credentials_api: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { n.writeHealth(w, false) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { n.writeHealth(w, true) })
	return mux, nil
}

// writeHealth answers /healthz, or /readyz when ready is set.
func (n *Node) writeHealth(w http.ResponseWriter, ready bool) {
	h := APIHealth{Status: "ok", Nodes: len(n.Nodes()), Redis: !n.Degraded()}
	h.Ready = len(pick(n.Nodes(), "", len(n.Nodes()), time.Now().Add(-n.ageing), ""))
	status := http.StatusOK
	if ready && h.Ready == 0 {
		h.Status, status = "unready", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(h)
}
