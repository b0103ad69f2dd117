package proto

import "testing"

// TestClassify checks all 256 first bytes against RFC 7983's ranges.
func TestClassify(t *testing.T) {
	for i := range 256 {
		b := byte(i)
		want := KindUnknown
		switch {
		case b <= 3:
			want = KindSTUN
		case b >= 64 && b <= 79:
			want = KindChannelData
		case b == 0x16:
			want = KindTLS
		}
		if got := Classify(b); got != want {
			t.Errorf("Classify(%#02x) = %v, want %v", b, got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	tests := map[Kind]string{
		KindUnknown: "unknown", KindSTUN: "STUN", KindChannelData: "ChannelData", KindTLS: "TLS", Kind(200): "unknown",
	}
	for k, want := range tests {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		for i := range 256 {
			_ = Classify(byte(i))
		}
	}); n != 0 {
		t.Errorf("Classify allocates %.1f times, want 0", n)
	}
}

func BenchmarkClassify(b *testing.B) {
	var k Kind
	i := 0
	for b.Loop() {
		k += Classify(byte(i))
		i++
	}
	_ = k
}
