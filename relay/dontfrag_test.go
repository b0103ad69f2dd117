package relay

import (
	"testing"

	"github.com/pion/stun/v4"
)

// TestUnknownDontFragment: where DF cannot be set, an Allocate with
// DONT-FRAGMENT is answered 420 listing it (RFC 8656 §7.2).
func TestUnknownDontFragment(t *testing.T) {
	err := errUnknownDontFragment()
	if code, _ := errorCode(err); code != stun.CodeUnknownAttribute {
		t.Fatalf("code %d, want 420", code)
	}
	m := stun.New()
	for _, set := range err.(*stunError).extra {
		if err := set.AddTo(m); err != nil {
			t.Fatal(err)
		}
	}
	var unknown stun.UnknownAttributes
	if err := unknown.GetFrom(m); err != nil || len(unknown) != 1 || unknown[0] != stun.AttrDontFragment {
		t.Fatalf("UNKNOWN-ATTRIBUTES %v, %v; want DONT-FRAGMENT", unknown, err)
	}
}
