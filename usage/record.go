package usage

import (
	"strconv"
	"time"

	"github.com/postern/postern/relay"
)

// SchemaVersion is the "v" of every record; it changes only when a field
// changes meaning or goes away (new fields may be added without it).
const SchemaVersion = 1

// Record types.
const (
	TypeInterim = "interim"
	TypeFinal   = "final"
)

// Record is one usage record as written to the JSONL file and, as its
// "record" field, to the Redis stream (see the package documentation for
// the schema and how to add records up).
type Record struct {
	V       int    `json:"v"`
	ID      string `json:"id"`      // Session + ":" + Seq: unique, for de-duplication
	Session string `json:"session"` // Node + "/" + the relay's session: one allocation
	Seq     uint32 `json:"seq"`
	Type    string `json:"type"`             // TypeInterim or TypeFinal
	Reason  string `json:"reason,omitempty"` // of a final record: relay.Usage...

	Node      string   `json:"node"`
	Realm     string   `json:"realm"`
	User      string   `json:"user"`
	Username  string   `json:"username"`
	Client    string   `json:"client"`
	Transport string   `json:"transport"`
	Relayed   []string `json:"relayed"`
	AllocID   uint64   `json:"allocation_id"`

	Start       time.Time `json:"start"`
	PeriodStart time.Time `json:"period_start"`
	End         time.Time `json:"end"`

	BytesToPeer     uint64 `json:"bytes_to_peer"`
	PacketsToPeer   uint64 `json:"packets_to_peer"`
	BytesToClient   uint64 `json:"bytes_to_client"`
	PacketsToClient uint64 `json:"packets_to_client"`
}

// FromRelay is the Record of r, made on node.
func FromRelay(node string, r relay.UsageRecord) Record {
	session := node + "/" + r.Session
	rec := Record{
		V: SchemaVersion, ID: session + ":" + strconv.FormatUint(uint64(r.Seq), 10), Session: session, Seq: r.Seq,
		Type: TypeInterim, Node: node, Realm: r.Realm, User: r.User, Username: r.Username,
		Client: r.Client.String(), Transport: r.Transport, AllocID: r.ID,
		Start: r.Start.UTC(), PeriodStart: r.PeriodStart.UTC(), End: r.End.UTC(),
		BytesToPeer: r.ToPeer.Bytes, PacketsToPeer: r.ToPeer.Packets,
		BytesToClient: r.ToClient.Bytes, PacketsToClient: r.ToClient.Packets,
	}
	if r.Final {
		rec.Type, rec.Reason = TypeFinal, r.Reason
	}
	for _, a := range r.Relayed {
		rec.Relayed = append(rec.Relayed, a.String())
	}
	return rec
}
