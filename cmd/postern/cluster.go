package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/config"
	"github.com/postern/postern/iceapi"
	"github.com/postern/postern/relay"
)

// Serve's fleet wiring ([cluster], package cluster), all in this file.
// With [cluster] redis empty, startCluster returns nil and every method of
// a nil *fleetWiring does nothing: the server is exactly as without a
// fleet. Otherwise, before the relay is built, startCluster takes the
// fleet's nonce key (nonce_key_file, or Redis) and its REST secrets for
// the run's authenticators, makes the credentials API choose among the
// fleet's nodes, and gives the relay its relay.Fleet; start, once the
// relay serves, publishes the node in the registry and runs its
// heartbeat and the fleet operations until the context ends.

// ClusterConfig is the [cluster] table, whose keys are all declared in
// package config; the empty table keeps "unknown key" errors listing them.
type ClusterConfig struct{}

// fleetWiring is a serving node's membership of its fleet.
type fleetWiring struct {
	node *cluster.Node
	live *live
	log  *slog.Logger
	wg   sync.WaitGroup
}

// clusterConfig is the cluster.Config of the resolved settings s (nil
// when [cluster] redis is empty).
func clusterConfig(s settings, log *slog.Logger) (*cluster.Config, error) {
	get := func(key string) any { return config.Get(config.Settings(), s.declared, key) }
	url := get("cluster.redis").(string)
	if url == "" {
		return nil, nil
	}
	name := get("cluster.node").(string)
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("cluster.node (--cluster-node): the host has no name (%v): name this node", err)
		}
		name = h
	}
	rules, _ := cluster.ParseRegionRules(get("cluster.region_rules").(string)) // checked
	return &cluster.Config{
		URL: url, Node: name, Region: get("cluster.region").(string), Version: version(),
		Heartbeat: get("cluster.heartbeat").(time.Duration), Timeout: get("cluster.timeout").(time.Duration),
		UserQuota: get("limits.user_quota").(int), IPQuota: get("limits.ip_quota").(int),
		RegionRules: rules, Logger: log,
	}, nil
}

// startCluster joins the fleet of s, if any, before the relay is built:
// it puts the fleet's nonce key and secrets into lv's authenticator and
// the fleet's choice of node into lv's credentials API. Redis unreachable
// is no error (the node starts alone and joins when Redis answers); only
// a configuration that cannot work is.
func startCluster(ctx context.Context, s settings, lv *live, log *slog.Logger) (*fleetWiring, error) {
	cfg, err := clusterConfig(s, log)
	if err != nil || cfg == nil {
		return nil, err
	}
	n, err := cluster.New(*cfg)
	if err != nil {
		return nil, err
	}
	f := &fleetWiring{node: n, live: lv, log: log}
	var key []byte
	if file := config.Get(config.Settings(), s.declared, "cluster.nonce_key_file").(string); file != "" {
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
	lv.nonceKey = key
	if lv.auth, err = lv.newAuth(s); err != nil {
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

// start publishes the serving node (with the ICE URLs of its bound
// listeners, as the credentials API derives them for s) and runs it until
// ctx ends; stop waits for that.
func (f *fleetWiring) start(ctx context.Context, srv *relay.Server, s settings, adminAddr string) {
	if f == nil {
		return
	}
	if adminAddr == "off" {
		adminAddr = ""
	}
	urls, err := advertisedURLs(srv.Addrs(), s)
	if err != nil {
		// Listed without URLs, the node is never handed out.
		f.log.Warn("cluster: this node has no ICE URLs to hand out: set ice_servers.host", "err", err)
	}
	f.node.Attach(srv, urls, adminAddr)
	f.wg.Go(func() { f.node.Run(ctx) })
}

// stop waits for the node to leave the registry and closes its Redis
// connections.
func (f *fleetWiring) stop() {
	if f == nil {
		return
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
			return iceapi.Configuration{}, errors.New("cluster: no node of the fleet is ready (all draining or silent)")
		}
		// The registry is empty (Redis unreachable since start): this
		// node is the fleet it knows.
		return mintConfiguration(m.urls, m.secret, r.User, r.TTL, now), nil
	}
	var out iceapi.Configuration
	for _, n := range nodes {
		c := mintConfiguration(n.URLs, m.secret, r.User, r.TTL, now)
		out.ICEServers = append(out.ICEServers, c.ICEServers...)
	}
	return out, nil
}

// fleetSecretsChanged puts the fleet's new secrets in force (run's
// goroutine, like a reload): a new authenticator with the running
// settings and nonce key, and what the credentials API mints with.
func (l *live) fleetSecretsChanged() {
	a, err := l.newAuth(l.cur)
	if err != nil {
		l.log.Error("cluster: the fleet's new secrets cannot be used: the previous ones stay in force", "err", err)
		return
	}
	l.srv.SetAuth(a)
	l.mint.Store(l.newMintState(l.cur))
	l.log.Info("cluster: fleet secrets in force", "secrets", len(l.secretsFor(l.cur)))
}

// The fleet-wide forms of postern sessions, kick and drain (--fleet):
// they go through the fleet's Redis (cluster.Client, pub/sub), so they
// reach every node whatever its admin listener binds.
const (
	flagFleet        = "fleet"
	flagFleetRedis   = "cluster-redis"
	flagFleetNode    = "node"
	fleetWaitTimeout = 3 * time.Second
)

// fleetFlags are the flags of the fleet-wide forms.
func fleetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagFleet, Usage: "act on every node of the fleet, through its Redis ([cluster] redis of --config, or --cluster-redis)"},
		&cli.StringFlag{Name: flagFleetRedis, Usage: "with --fleet: the fleet's Redis `URL` (redis://HOST:PORT)"},
		&cli.StringFlag{Name: flagFleetNode, Usage: "with --fleet: only node `NAME`"},
	}
}

// fleetClient connects to the Redis of --cluster-redis, else of the
// --config file's [cluster] redis.
func fleetClient(cmd *cli.Command) (*cluster.Client, error) {
	url := cmd.String(flagFleetRedis)
	if url == "" {
		if path := cmd.String(flagConfig); path != "" {
			c, err := Load(path)
			if err != nil {
				return nil, err
			}
			url, _ = config.Get(config.Settings(), c.Declared, "cluster.redis").(string)
		}
	}
	if url == "" {
		return nil, fmt.Errorf("--%s: give the fleet's Redis with --%s URL, or --config FILE with [cluster] redis", flagFleet, flagFleetRedis)
	}
	c, err := cluster.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("--%s %w", flagFleetRedis, err)
	}
	return c, nil
}

// fleetDo sends op to the fleet (the --node of cmd, or every node).
func fleetDo(ctx context.Context, cmd *cli.Command, op cluster.Op) ([]cluster.Result, error) {
	c, err := fleetClient(cmd)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if op.Node == "" {
		op.Node = cmd.String(flagFleetNode)
	}
	res, err := c.Do(ctx, op, fleetWaitTimeout)
	if err != nil {
		return res, err
	}
	if len(res) == 0 {
		if op.Node != "" {
			return nil, fmt.Errorf("no node %q answered: is it running and in the fleet?", op.Node)
		}
		return nil, errors.New("no node of the fleet answered: are they running with this [cluster] redis?")
	}
	slices.SortFunc(res, func(a, b cluster.Result) int { return strings.Compare(a.Node, b.Node) })
	for _, r := range res {
		if r.Error != "" {
			err = errors.Join(err, fmt.Errorf("node %s: %s", r.Node, r.Error))
		}
	}
	return res, err
}

// fleetSessions is postern sessions --fleet: IDs are NODE/ID.
func fleetSessions(ctx context.Context, cmd *cli.Command) error {
	res, err := fleetDo(ctx, cmd, cluster.Op{Op: cluster.OpSessions, User: cmd.String(flagSessionUser)})
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	if cmd.Bool(flagJSON) {
		lists := make([]admin.SessionList, 0, len(res))
		for _, r := range res {
			lists = append(lists, admin.SessionList{Node: r.Node, Sessions: append([]admin.Session{}, r.Sessions...)})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"nodes": lists})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE/ID\tUSER\tCLIENT\tTRANSPORT\tRELAYED\tAGE\tLEFT\tTO PEER\tTO CLIENT")
	for _, r := range res {
		for _, s := range r.Sessions {
			fmt.Fprintf(tw, "%s/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, s.ID, s.User, s.Client, s.Transport, s.Relayed,
				seconds(s.AgeSeconds), seconds(s.LifetimeLeftSeconds), humanBytes(s.ToPeer.Bytes), humanBytes(s.ToClient.Bytes))
		}
	}
	return tw.Flush()
}

// fleetKick is postern kick --fleet: NODE/ID... or --user NAME on every
// node.
func fleetKick(ctx context.Context, cmd *cli.Command) error {
	w := cmd.Root().Writer
	if user := cmd.String(flagSessionUser); user != "" {
		if cmd.NArg() > 0 {
			return fmt.Errorf("kick takes session IDs or --%s NAME, not both", flagSessionUser)
		}
		res, err := fleetDo(ctx, cmd, cluster.Op{Op: cluster.OpKickUser, User: user})
		if err != nil {
			return err
		}
		total := 0
		for _, r := range res {
			total += r.Kicked
		}
		if total == 0 {
			return fmt.Errorf("kick: user %s has no live session in the fleet", user)
		}
		fmt.Fprintf(w, "kicked %d session(s) of %s on %d node(s)\n", total, user, len(res))
		return nil
	}
	if cmd.NArg() == 0 {
		return fmt.Errorf("kick --%s: name the sessions: NODE/ID (from postern sessions --%s), or --%s NAME", flagFleet, flagFleet, flagSessionUser)
	}
	var errs []error
	for _, a := range cmd.Args().Slice() {
		node, idText, ok := strings.Cut(a, "/")
		id, err := strconv.ParseUint(idText, 10, 64)
		if !ok || node == "" || err != nil {
			errs = append(errs, fmt.Errorf("kick --%s: %q: write NODE/ID, as postern sessions --%s prints them", flagFleet, a, flagFleet))
			continue
		}
		res, err := fleetDo(ctx, cmd, cluster.Op{Op: cluster.OpKick, Node: node, ID: id})
		switch {
		case err != nil:
			errs = append(errs, err)
		case res[0].Kicked == 0:
			errs = append(errs, fmt.Errorf("kick: node %s has no live session with ID %d", node, id))
		default:
			fmt.Fprintf(w, "kicked session %s\n", a)
		}
	}
	return errors.Join(errs...)
}

// fleetDrain is postern drain --fleet: every node (or --node) drains, or
// with --undo serves again.
func fleetDrain(ctx context.Context, cmd *cli.Command) error {
	op := cluster.OpDrain
	if cmd.Bool(flagUndo) {
		op = cluster.OpUndrain
	}
	res, err := fleetDo(ctx, cmd, cluster.Op{Op: op})
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	w := cmd.Root().Writer
	for _, r := range res {
		state := "serving"
		if r.Draining {
			state = "draining"
		}
		fmt.Fprintf(w, "%s: %s\n", r.Node, state)
	}
	return nil
}
