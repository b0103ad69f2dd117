package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/admin"
)

// Fleet operations travel over Redis pub/sub (channel postern:ops), so an
// operator reaches every node through Redis alone, whatever the nodes'
// admin listeners bind: a message names its node ("" for every node), and
// each node that acts on it pushes its Result onto the message's reply
// list (which expires after a minute).

// Operations.
const (
	OpSessions = "sessions"  // list sessions (of User when set)
	OpKick     = "kick"      // end allocation ID on Node
	OpKickUser = "kick_user" // end every allocation of User
	OpDrain    = "drain"     // start draining
	OpUndrain  = "undrain"   // stop draining
)

// Op is one fleet operation.
type Op struct {
	Op    string `json:"op"`
	Node  string `json:"node,omitempty"`
	ID    uint64 `json:"id,omitempty"`
	User  string `json:"user,omitempty"`
	Reply string `json:"reply,omitempty"`
}

// Result is one node's answer to an Op.
type Result struct {
	Node     string          `json:"node"`
	Kicked   int             `json:"kicked,omitempty"`
	Draining bool            `json:"draining"`
	Sessions []admin.Session `json:"sessions,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// replyTTL is how long an unread reply list stays in Redis.
const replyTTL = time.Minute

// Client sends fleet operations; the command line uses it without being
// a node.
type Client struct{ rdb *redis.Client }

// Dial returns a Client of the Redis at url (ParseURL).
func Dial(url string) (*Client, error) {
	opts, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.DisableIdentity = true
	return &Client{rdb: redis.NewClient(opts)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.rdb.Close() }

// Do publishes op and collects the answers of the nodes that received it,
// waiting at most wait for them.
func (c *Client) Do(ctx context.Context, op Op, wait time.Duration) ([]Result, error) {
	op.Reply = keyReplyPfx + rand.Text()
	b, err := json.Marshal(op)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	receivers, err := c.rdb.Publish(ctx, channelOps, b).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster: publishing %s: %w", op.Op, err)
	}
	want := receivers // every node answers an Op for all
	if op.Node != "" {
		want = min(receivers, 1) // only the node named
	}
	var out []Result
	for int64(len(out)) < want {
		left := time.Until(deadlineOf(ctx))
		if left <= 0 {
			break
		}
		kv, err := c.rdb.BLPop(ctx, left, op.Reply).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) || ctx.Err() != nil {
				break
			}
			return out, fmt.Errorf("cluster: reading answers: %w", err)
		}
		var r Result
		if err := json.Unmarshal([]byte(kv[1]), &r); err == nil {
			out = append(out, r)
		}
	}
	if int64(len(out)) < want && op.Node == "" {
		return out, fmt.Errorf("cluster: %d of %d nodes answered within %v", len(out), want, wait)
	}
	return out, nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// Do sends op through this node's connection (Client.Do).
func (n *Node) Do(ctx context.Context, op Op, wait time.Duration) ([]Result, error) {
	return (&Client{rdb: n.rdb}).Do(ctx, op, wait)
}

// serveOps acts on the fleet operations addressed to this node until ctx
// is done. The subscription reconnects by itself after a Redis outage.
func (n *Node) serveOps(ctx context.Context) {
	defer n.ops.Close()
	ch := n.ops.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			var op Op
			if err := json.Unmarshal([]byte(m.Payload), &op); err != nil {
				n.log.Warn("cluster: ignoring a malformed operation", "err", err)
				continue
			}
			if op.Node != "" && op.Node != n.cfg.Node {
				continue
			}
			n.reply(ctx, op, n.act(op))
		}
	}
}

// act performs op on the local relay.
func (n *Node) act(op Op) Result {
	r := Result{Node: n.cfg.Node}
	box := n.local.Load()
	if box == nil {
		r.Error = "not serving yet"
		return r
	}
	switch op.Op {
	case OpSessions:
		now := time.Now()
		for _, s := range box.Sessions(op.User) {
			r.Sessions = append(r.Sessions, admin.SessionOf(s, now))
		}
	case OpKick:
		if box.Kick(op.ID) {
			r.Kicked = 1
		}
	case OpKickUser:
		r.Kicked = box.KickUser(op.User)
	case OpDrain, OpUndrain:
		box.SetDraining(op.Op == OpDrain)
		n.BeatSoon() // the registry shows the new state at once
	default:
		r.Error = fmt.Sprintf("unknown operation %q", op.Op)
	}
	if r.Kicked > 0 {
		n.log.Info("cluster: fleet operation", "op", op.Op, "id", op.ID, "user", op.User, "kicked", r.Kicked)
	}
	r.Draining = box.Draining()
	return r
}

// reply pushes r onto op's reply list.
func (n *Node) reply(ctx context.Context, op Op, r Result) {
	if op.Reply == "" {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout*5)
	defer cancel()
	_, _ = n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, op.Reply, b)
		p.Expire(ctx, op.Reply, replyTTL)
		return nil
	})
}
