package allocations

import (
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
			// Compare instants, not time.Time internals.
			norm := func(ts []time.Time) []int64 {
				out := make([]int64, len(ts))
				for i, x := range ts {
					out[i] = x.UnixNano()
				}
				return out
			}
			var gotP, wantP, gotC, wantC []time.Time
			for i := range perms {
				gotP = append(gotP, perms[i].Expires)
				perms[i].Expires = time.Time{}
			}
			for i := range tt.wantPerms {
				wantP = append(wantP, tt.wantPerms[i].Expires)
				tt.wantPerms[i].Expires = time.Time{}
			}
			for i := range chans {
				gotC = append(gotC, chans[i].Expires)
				chans[i].Expires = time.Time{}
			}
			for i := range tt.wantChans {
				wantC = append(wantC, tt.wantChans[i].Expires)
				tt.wantChans[i].Expires = time.Time{}
			}
			if !reflect.DeepEqual(perms, tt.wantPerms) || !reflect.DeepEqual(norm(gotP), norm(wantP)) {
				t.Errorf("Permissions = %v %v, want %v %v", perms, gotP, tt.wantPerms, wantP)
			}
			if !reflect.DeepEqual(chans, tt.wantChans) || !reflect.DeepEqual(norm(gotC), norm(wantC)) {
				t.Errorf("Channels = %v %v, want %v %v", chans, gotC, tt.wantChans, wantC)
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
