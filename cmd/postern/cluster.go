package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/postern/postern/admin"
	"github.com/postern/postern/cluster"
	"github.com/postern/postern/config"
)

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
			c, err := config.Load(path)
			if err != nil {
				return nil, err
			}
			url, _ = c["cluster.redis"].(string)
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
	lists := make([]admin.SessionList, 0, len(res))
	for _, r := range res {
		lists = append(lists, admin.SessionList{Node: r.Node, Sessions: append([]admin.Session{}, r.Sessions...)})
	}
	w := cmd.Root().Writer
	if cmd.Bool(flagJSON) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"nodes": lists})
	}
	return admin.WriteFleetSessions(w, lists)
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
