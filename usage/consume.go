package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Consumer reads usage records from the stream as one member of a Redis
// consumer group: each record goes to one member of the group, and stays
// pending (XPENDING) until the member that got it acknowledges it, so a
// billing system that crashes between reading and storing a record gets
// it again (Pending first, on restart). It is the tested example of a
// consumer; see the package documentation.
type Consumer struct {
	Client *redis.Client
	// Stream is the stream's key (DefaultStream); Group and Name name the
	// consumer group and this member of it.
	Stream, Group, Name string
	// Block is how long one read waits for new records; 2 s when zero.
	Block time.Duration
}

// ackTimeout bounds the acknowledgement of a handled record.
const ackTimeout = 2 * time.Second

// Run hands every record to handle, oldest first, and acknowledges it
// (XACK) once handle returns nil; a record whose handle fails stays
// pending and is handed again on the next Run. It first creates the group
// (reading from the stream's start) if it does not exist, and hands the
// records this member left pending, then new ones, until ctx is done or
// handle fails. Records are delivered at least once: de-duplicate by
// Record.ID (Totals does).
func (c *Consumer) Run(ctx context.Context, handle func(Record) error) error {
	err := c.Client.XGroupCreateMkStream(ctx, c.Stream, c.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("usage: create consumer group %s on %s: %w", c.Group, c.Stream, err)
	}
	block := c.Block
	if block == 0 {
		block = 2 * time.Second
	}
	// "0": this member's pending records first; ">" then: new ones.
	start := "0"
	for ctx.Err() == nil {
		res, err := c.Client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: c.Group, Consumer: c.Name, Streams: []string{c.Stream, start}, Count: 100, Block: block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // nothing new within Block
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("usage: XREADGROUP %s: %w", c.Stream, err)
		}
		n := 0
		for _, s := range res {
			for _, m := range s.Messages {
				n++
				raw, _ := m.Values["record"].(string)
				var rec Record
				if err := json.Unmarshal([]byte(raw), &rec); err != nil {
					return fmt.Errorf("usage: stream entry %s: %w", m.ID, err)
				}
				if err := handle(rec); err != nil {
					return err
				}
				// Handled: acknowledged even if ctx has just ended, or
				// the record would be delivered again (TestStreamRecordsAddUp
				// once failed on an XACK cut off by the stop).
				actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
				err := c.Client.XAck(actx, c.Stream, c.Group, m.ID).Err()
				cancel()
				if err != nil {
					return fmt.Errorf("usage: XACK %s: %w", m.ID, err)
				}
			}
		}
		if start == "0" && n == 0 {
			start = ">"
		}
	}
	return nil
}

// Totals adds records up per session, ignoring a record seen before (by
// ID): what a billing system does with the records of the stream or the
// file. The zero value is not ready: use NewTotals.
type Totals struct {
	seen map[string]bool
	// Sessions maps Record.Session to the sum of its records (the fields
	// of the last one seen, the traffic of all) and whether the final
	// record has arrived (Type TypeFinal).
	Sessions map[string]*Record
}

// NewTotals returns empty Totals.
func NewTotals() *Totals {
	return &Totals{seen: map[string]bool{}, Sessions: map[string]*Record{}}
}

// Add counts r unless a record of its ID was counted before; it reports
// whether it counted it.
func (t *Totals) Add(r Record) bool {
	if t.seen[r.ID] {
		return false
	}
	t.seen[r.ID] = true
	sum, ok := t.Sessions[r.Session]
	if !ok {
		sum = &Record{}
		t.Sessions[r.Session] = sum
	}
	bp, pp, bc, pc := sum.BytesToPeer, sum.PacketsToPeer, sum.BytesToClient, sum.PacketsToClient
	final := sum.Type == TypeFinal
	if !final {
		*sum = r // keep the latest fields; the final record's win
	}
	sum.BytesToPeer, sum.PacketsToPeer = bp+r.BytesToPeer, pp+r.PacketsToPeer
	sum.BytesToClient, sum.PacketsToClient = bc+r.BytesToClient, pc+r.PacketsToClient
	return true
}
