package allocations

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestSnapshotAccessors(t *testing.T) {
	a := &Allocation{}
	if p, c := a.CountLive(t0); p != 0 || c != 0 || a.Permissions(t0) != nil || a.Channels(t0) != nil {
		t.Fatalf("empty allocation: %d permissions, %d channels", p, c)
	}
	p1 := netip.MustParseAddr("198.51.100.1")
	p2 := netip.MustParseAddrPort("198.51.100.2:5000")
	if err := a.Permit(p1, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.BindChannel(0x4001, p2, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		at        time.Time
		wantPerms []Permission
		wantChans []Channel
	}{
		{"both live", t0.Add(2 * time.Minute),
			[]Permission{{p1, t0.Add(PermissionLifetime)}, {p2.Addr(), t0.Add(time.Minute + PermissionLifetime)}},
			[]Channel{{0x4001, p2, t0.Add(time.Minute + ChannelLifetime)}}},
		{"first permission expired", t0.Add(PermissionLifetime),
			[]Permission{{p2.Addr(), t0.Add(time.Minute + PermissionLifetime)}},
			[]Channel{{0x4001, p2, t0.Add(time.Minute + ChannelLifetime)}}},
		{"channel cooling is not live", t0.Add(time.Minute + ChannelLifetime), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perms, chans := a.Permissions(tt.at), a.Channels(tt.at)
			if got, want := permStrings(perms), permStrings(tt.wantPerms); !reflect.DeepEqual(got, want) {
				t.Errorf("Permissions = %v, want %v", got, want)
			}
			if got, want := chanStrings(chans), chanStrings(tt.wantChans); !reflect.DeepEqual(got, want) {
				t.Errorf("Channels = %v, want %v", got, want)
			}
			if p, c := a.CountLive(tt.at); p != len(perms) || c != len(chans) {
				t.Errorf("CountLive = %d, %d; want %d, %d", p, c, len(perms), len(chans))
			}
		})
	}

	if n := testing.AllocsPerRun(100, func() { a.CountLive(t0) }); n != 0 {
		t.Errorf("CountLive allocates %v times, want 0", n)
	}
}

// permStrings and chanStrings format entries with their expiry as an
// instant, so comparisons ignore time.Time's internal representation.
func permStrings(ps []Permission) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%v until %d", p.Peer, p.Expires.UnixNano()))
	}
	return out
}

func chanStrings(cs []Channel) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("0x%04x %v until %d", c.Number, c.Peer, c.Expires.UnixNano()))
	}
	return out
}
