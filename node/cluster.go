package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// The node's fleet wiring ([cluster], package cluster), all in this file.
// With [cluster] redis empty, startCluster returns nil and every method of
// a nil *fleetWiring does nothing: the node is exactly as without a
// fleet. Otherwise, before the relay is built, startCluster takes the
// fleet's nonce key (nonce_key_file, or Redis) and its REST secrets for
// the run's authenticators, makes the credentials API choose among the
// fleet's nodes, and gives the relay its relay.Fleet; start, once the
// relay serves, publishes the node in the registry and runs its
// heartbeat and the fleet operations until the context ends.

// fleetWiring is a serving node's membership of its fleet.
type fleetWiring struct {
	node   *cluster.Node
	live   *live
	log    *slog.Logger
	wg     sync.WaitGroup
	cancel context.CancelFunc // set by start
}

// startCluster joins the fleet of s, if any, before the relay is built:
// it puts the fleet's nonce key and secrets into lv's authenticator and
// the fleet's choice of node into lv's credentials API. Redis unreachable
// is no error (the node starts alone and joins when Redis answers); only
// a configuration that cannot work is.
func startCluster(ctx context.Context, s config.Values, lv *live, version string, log *slog.Logger) (*fleetWiring, error) {
	cfg, err := config.ClusterOf(s)
	if err != nil || cfg == nil {
		return nil, err
	}
	cfg.Version, cfg.Logger = version, log
	n, err := cluster.New(*cfg)
	if err != nil {
		return nil, err
	}
	f := &fleetWiring{node: n, live: lv, log: log}
	var key []byte
	if file := config.NonceKeyFile(s); file != "" {
		if key, err = cluster.ReadNonceKeyFile(file); err != nil {
			_ = n.Close()
			return nil, fmt.Errorf("cluster.nonce_key_file (--cluster-nonce-key-file): %w", err)
		}
	} else if key, err = n.NonceKey(ctx); err != nil {
		log.Warn("cluster: no shared nonce key: this node's nonces are its own until it restarts with Redis "+
			"(clients moving between nodes get one 438 and retry); set cluster.nonce_key_file to avoid this", "err", err)
	}
	if err := n.LoadSecrets(ctx); err != nil {
		log.Warn("cluster: fleet secrets not read yet: auth.secrets only until Redis answers", "err", err)
	}
	lv.fleet = n
	lv.fleetMint = f.mint
	lv.fleetChanged = make(chan struct{}, 1)
	if key != nil {
		lv.nonceKey = key
	}
	if lv.auth, err = lv.newAuth(s, lv.creds); err != nil {
		_ = n.Close()
		return nil, err
	}
	h, err := lv.newHandler(s)
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	if h != nil {
		lv.api.Store(h)
	}
	n.OnSecrets(func([]string) {
		select {
		case lv.fleetChanged <- struct{}{}:
		default:
		}
	})
	log.Info("cluster: joined the fleet", "node", cfg.Node, "region", cfg.Region, "secrets_from_redis", len(n.Secrets()))
	return f, nil
}

// relayFleet is what relay.Config.Fleet gets: nil without a fleet.
func (f *fleetWiring) relayFleet() relay.Fleet {
	if f == nil {
		return nil
	}
	return f.node
}

// adminFleet is what admin.Config.Fleet gets: nil without a fleet.
func (f *fleetWiring) adminFleet() admin.Fleet {
	if f == nil {
		return nil
	}
	return f.node
}

// name is the node's name in the fleet ("" without a fleet).
func (f *fleetWiring) name() string {
	if f == nil {
		return ""
	}
	return f.node.Name()
}

// start publishes the serving node (with the ICE URLs of its bound
// listeners, as the credentials API derives them for s) and runs it until
// ctx ends or stop is called; stop waits for that.
func (f *fleetWiring) start(ctx context.Context, srv *relay.Server, s config.Values, external netip.Addr, adminAddr string) {
	if f == nil {
		return
	}
	if adminAddr == "off" {
		adminAddr = ""
	}
	urls, err := AdvertisedURLs(srv.Addrs(), s, external)
	if err != nil {
		// Listed without URLs, the node is never handed out.
		f.log.Warn("cluster: this node has no ICE URLs to hand out: set ice_servers.host", "err", err)
	}
	f.node.Attach(srv, urls, adminAddr)
	ctx, f.cancel = context.WithCancel(ctx)
	f.wg.Go(func() { f.node.Run(ctx) })
}

// stop waits for the node to leave the registry and closes its Redis
// connections.
func (f *fleetWiring) stop() {
	if f == nil {
		return
	}
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	_ = f.node.Close()
}

// mint is the fleet's credentials API: the URLs of the best live node(s)
// for the request (cluster.Node.Pick), each with a credential of the
// secret in force (the fleet shares its secrets). Before the registry
// lists any node (Redis down since start), the node hands out its own
// unless it drains; with no node ready, minting fails (500).
func (f *fleetWiring) mint(r iceapi.Request) (iceapi.Configuration, error) {
	m := f.live.mint.Load()
	if m.err != nil {
		return iceapi.Configuration{}, m.err
	}
	now := time.Now()
	nodes := f.node.Pick(r.Region, r.Client, r.Servers)
	if len(nodes) == 0 {
		if len(f.node.Nodes()) > 0 || f.live.srv.Draining() {
			// Never a draining or silent node, this one included.
			return iceapi.Configuration{}, cluster.ErrNoNode // 503, as from postern api
		}
		// The registry is empty (Redis unreachable since start): this
		// node is the fleet it knows.
		return iceapi.RESTConfiguration(m.urls, m.secret, r.User, r.TTL, now), nil
	}
	var out iceapi.Configuration
	for _, n := range nodes {
		c := iceapi.RESTConfiguration(n.URLs, m.secret, r.User, r.TTL, now)
		out.ICEServers = append(out.ICEServers, c.ICEServers...)
	}
	return out, nil
}

// fleetSecretsChanged puts the fleet's new secrets in force (run's
// goroutine, like a reload): a new authenticator with the running
// settings and nonce key, and what the credentials API mints with.
func (l *live) fleetSecretsChanged() {
	a, err := l.newAuth(l.cur, l.creds)
	if err != nil {
		l.log.Error("cluster: the fleet's new secrets cannot be used: the previous ones stay in force", "err", err)
		return
	}
	l.srv.SetAuth(a)
	l.mint.Store(l.newMintState(l.cur, l.creds))
	l.log.Info("cluster: fleet secrets in force", "secrets", len(l.secretsFor(l.creds)))
}
