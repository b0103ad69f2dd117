package proto

import (
	"bytes"
	"errors"
	"testing"
)

func TestPaddedLen(t *testing.T) {
	tests := []struct{ in, want int }{
		{0, 0}, {1, 4}, {2, 4}, {3, 4}, {4, 4}, {5, 8}, {1200, 1200}, {1201, 1204}, {65535, 65536},
	}
	for _, tt := range tests {
		if got := PaddedLen(tt.in); got != tt.want {
			t.Errorf("PaddedLen(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseChannelData(t *testing.T) {
	tests := []struct {
		name        string
		in          []byte
		wantNumber  uint16
		wantPayload []byte
		wantErr     error
	}{
		{"hello", []byte("\x40\x00\x00\x05hello"), 0x4000, []byte("hello"), nil},
		{"padded", []byte("\x40\x00\x00\x05hello\x00\x00\x00"), 0x4000, []byte("hello"), nil},
		{"extra trailing bytes", []byte("\x4f\xff\x00\x01xyzw"), 0x4FFF, []byte("x"), nil},
		{"empty payload", []byte("\x41\x23\x00\x00"), 0x4123, []byte{}, nil},
		{"empty buffer", nil, 0, nil, ErrTruncated},
		{"short header", []byte("\x40\x00\x00"), 0, nil, ErrTruncated},
		{"length beyond buffer", []byte("\x40\x00\x00\x06hello"), 0, nil, ErrTruncated},
		{"length 0xffff", []byte("\x40\x00\xff\xffhello"), 0, nil, ErrTruncated},
		{"below range", []byte("\x3f\xff\x00\x00"), 0, nil, ErrBadChannelNumber},
		{"reserved 0x5000", []byte("\x50\x00\x00\x00"), 0, nil, ErrBadChannelNumber},
		{"stun", []byte("\x00\x01\x00\x00"), 0, nil, ErrBadChannelNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, p, err := ParseChannelData(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantNumber || !bytes.Equal(p, tt.wantPayload) {
				t.Errorf("got %#x %q, want %#x %q", n, p, tt.wantNumber, tt.wantPayload)
			}
			if err == nil && len(p) > 0 && &p[0] != &tt.in[ChannelDataHeaderSize] {
				t.Error("payload does not alias the input")
			}
		})
	}
}

func TestPutChannelData(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 5, 1200, MaxChannelDataPayload} {
		for _, pad := range []bool{false, true} {
			buf := bytes.Repeat([]byte{0xAA}, ChannelDataHeaderSize+n+3)
			for i := range n {
				buf[ChannelDataHeaderSize+i] = byte(i)
			}
			frame := PutChannelData(buf, 0x4abc, n, pad)
			wantLen := ChannelDataHeaderSize + n
			if pad {
				wantLen = ChannelDataHeaderSize + PaddedLen(n)
			}
			if len(frame) != wantLen {
				t.Fatalf("n=%d pad=%v: len %d, want %d", n, pad, len(frame), wantLen)
			}
			if pad && !bytes.Equal(frame[ChannelDataHeaderSize+n:], make([]byte, wantLen-ChannelDataHeaderSize-n)) {
				t.Errorf("n=%d: padding %x not zero", n, frame[ChannelDataHeaderSize+n:])
			}
			num, payload, err := ParseChannelData(frame)
			if err != nil || num != 0x4abc || len(payload) != n {
				t.Fatalf("n=%d pad=%v: parse = %#x, %d bytes, %v", n, pad, num, len(payload), err)
			}
			for i, b := range payload {
				if b != byte(i) {
					t.Fatalf("n=%d: payload byte %d = %d", n, i, b)
				}
			}
		}
	}
}

func TestPutChannelDataHeaderPanics(t *testing.T) {
	tests := []struct {
		name string
		buf  []byte
		n    int
	}{
		{"negative", make([]byte, 4), -1},
		{"too large", make([]byte, 4), MaxChannelDataPayload + 1},
		{"short buffer", make([]byte, 3), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			PutChannelDataHeader(tt.buf, 0x4000, tt.n)
		})
	}
}

// TestChannelDataAllocs: HOT, 0 allocations, also when parsing fails.
func TestChannelDataAllocs(t *testing.T) {
	good := make([]byte, 4+1200)
	PutChannelDataHeader(good, 0x4000, 1200)
	bad := []byte("\x50\x00\x00\x00")
	if n := testing.AllocsPerRun(1000, func() {
		_, _, _ = ParseChannelData(good)
		_, _, _ = ParseChannelData(bad)
		_, _, _ = ParseChannelData(good[:10])
		PutChannelData(good, 0x4001, 1200, true)
	}); n != 0 {
		t.Errorf("ChannelData path allocates %.1f times, want 0", n)
	}
}

func BenchmarkParseChannelData(b *testing.B) {
	buf := make([]byte, 4+1200)
	PutChannelDataHeader(buf, 0x4000, 1200)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, _, err := ParseChannelData(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutChannelData(b *testing.B) {
	buf := make([]byte, 4+1200+3)
	b.ReportAllocs()
	for b.Loop() {
		PutChannelData(buf, 0x4000, 1199, true)
	}
}
