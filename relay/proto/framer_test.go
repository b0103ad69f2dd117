package proto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pion/stun/v4"
)

type wantFrame struct {
	kind  Kind
	frame []byte
}

// streamFrames returns a byte stream of mixed TURN messages as a TCP client
// would send them (ChannelData padded) and the frames Next must return.
func streamFrames(t testing.TB) (stream []byte, want []wantFrame) {
	t.Helper()
	add := func(kind Kind, frame, padding []byte) {
		stream = append(stream, frame...)
		stream = append(stream, padding...)
		want = append(want, wantFrame{kind, frame})
	}
	alloc := build(t, allocateRequest, ProtoUDP, Lifetime(10*time.Minute), DontFragment{},
		stun.NewUsername("user"), stun.NewRealm("example.org"), stun.NewNonce("nonce"),
		stun.NewLongTermIntegrity("user", "example.org", "pass"), stun.Fingerprint)
	add(KindSTUN, alloc.Raw, nil)
	for n := range 6 { // every padding length, including none
		cd := make([]byte, ChannelDataHeaderSize+n)
		PutChannelDataHeader(cd, 0x4000+uint16(n), n)
		for i := range n {
			cd[ChannelDataHeaderSize+i] = byte(0xC0 + i)
		}
		add(KindChannelData, cd, make([]byte, PaddedLen(n)-n))
	}
	send := build(t, stun.NewType(stun.MethodSend, stun.ClassIndication), setterFunc(func(m *stun.Message) error {
		return AddXORAddress(m, stun.AttrXORPeerAddress, netip.MustParseAddrPort("[2001:db8::7]:9"))
	}), Data("abc"))
	add(KindSTUN, send.Raw, nil)
	add(KindSTUN, build(t, stun.BindingRequest).Raw, nil) // header only
	big := make([]byte, ChannelDataHeaderSize+1201)
	PutChannelDataHeader(big, 0x4FFF, 1201)
	add(KindChannelData, big, make([]byte, 3))
	return stream, want
}

// readAll calls Next until it fails, checking the frames against want.
func readAll(t *testing.T, f *Framer, want []wantFrame) error {
	t.Helper()
	for i := 0; ; i++ {
		frame, kind, err := f.Next()
		if err != nil {
			if i != len(want) {
				t.Errorf("error %v after %d frames, want %d frames", err, i, len(want))
			}
			return err
		}
		if i >= len(want) {
			t.Fatalf("extra frame %d: %v %x", i, kind, frame)
		}
		if kind != want[i].kind || !bytes.Equal(frame, want[i].frame) {
			t.Fatalf("frame %d = %v %x, want %v %x", i, kind, frame, want[i].kind, want[i].frame)
		}
	}
}

func TestFramerStream(t *testing.T) {
	stream, want := streamFrames(t)
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+err": iotest.DataErrReader, // returns io.EOF with the last bytes
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			f := NewFramer(wrap(bytes.NewReader(stream)))
			if err := readAll(t, f, want); err != io.EOF {
				t.Errorf("final error %v, want io.EOF", err)
			}
			// EOF is stable.
			if _, _, err := f.Next(); err != io.EOF {
				t.Errorf("second call: %v, want io.EOF", err)
			}
		})
	}
}

// TestFramerTruncated cuts the stream at every byte: whole frames before the
// cut come out, then io.EOF at a frame boundary or io.ErrUnexpectedEOF inside
// a frame (padding included).
func TestFramerTruncated(t *testing.T) {
	stream, want := streamFrames(t)
	boundaries := map[int]int{0: 0} // stream offset -> frames before it
	off := 0
	for i, w := range want {
		size := len(w.frame)
		if w.kind == KindChannelData {
			size = ChannelDataHeaderSize + PaddedLen(len(w.frame)-ChannelDataHeaderSize)
		}
		off += size
		boundaries[off] = i + 1
	}
	for cut := range len(stream) + 1 {
		frames, atBoundary := boundaries[cut]
		if !atBoundary {
			// Frames entirely before the cut.
			for o, n := range boundaries {
				if o < cut && n > frames {
					frames = n
				}
			}
		}
		f := NewFramer(iotest.HalfReader(bytes.NewReader(stream[:cut])))
		var err error
		for i := 0; i <= frames; i++ {
			if _, _, err = f.Next(); err != nil {
				if i != frames {
					t.Fatalf("cut %d: error %v after %d frames, want %d", cut, err, i, frames)
				}
				break
			}
		}
		wantErr := io.ErrUnexpectedEOF
		if atBoundary {
			wantErr = io.EOF
		}
		if err != wantErr {
			t.Fatalf("cut %d: err = %v, want %v", cut, err, wantErr)
		}
	}
}

func TestFramerNotTURN(t *testing.T) {
	stunHdr := func(length uint16, cookie uint32) []byte {
		b := []byte{0x00, 0x01, byte(length >> 8), byte(length), byte(cookie >> 24), byte(cookie >> 16), byte(cookie >> 8), byte(cookie)}
		b = append(b, make([]byte, 12+int(length))...)
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"tls client hello", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")},
		// "GET" would not do: 'G' (0x47) is a valid ChannelData first byte.
		{"http post", []byte("POST / HTTP/1.1\r\n\r\n")},
		{"rtp", []byte("\x80\x60\x00\x01\x00\x00\x00\x00")},
		{"dtls-range byte", []byte("\x17\xfe\xfd\x00")},
		{"reserved channel 0x5000", []byte("\x50\x00\x00\x04abcd")},
		{"first byte 4", []byte("\x04\x00\x00\x00")},
		{"stun length not multiple of 4", stunHdr(5, magicCookie)},
		{"stun length 0xffff", stunHdr(0xffff, magicCookie)},
		{"bad magic cookie", stunHdr(0, 0x2112A443)},
		{"rfc 3489 (no cookie)", stunHdr(8, 0xdeadbeef)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFramer(bytes.NewReader(tt.in))
			for range 3 { // repeated calls give the same error; nothing spins
				frame, kind, err := f.Next()
				if !errors.Is(err, ErrNotTURN) || frame != nil || kind != KindUnknown {
					t.Fatalf("Next = %x, %v, %v; want ErrNotTURN", frame, kind, err)
				}
			}
		})
	}
}

// TestFramerMaxFrames reads the largest frames of each kind, and checks that
// a huge length field with little data behind it fails cleanly instead of
// wrapping (pion/turn < v5.1, coturn #1837).
func TestFramerMaxFrames(t *testing.T) {
	cd := make([]byte, ChannelDataHeaderSize+0xFFFF)
	PutChannelDataHeader(cd, 0x4000, 0xFFFF)
	st := make([]byte, stunHeaderSize+0xFFFC)
	copy(st, []byte{0x00, 0x01, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42})
	stream := append(append(append([]byte{}, cd...), 0), st...)
	if err := readAll(t, NewFramer(iotest.HalfReader(bytes.NewReader(stream))),
		[]wantFrame{{KindChannelData, cd}, {KindSTUN, st}}); err != io.EOF {
		t.Errorf("final error %v, want io.EOF", err)
	}
	for _, short := range [][]byte{cd[:100], st[:100], cd[:len(cd)], st[:len(st)-1]} {
		// cd[:len(cd)] lacks its 1 padding byte.
		if _, _, err := NewFramer(bytes.NewReader(short)).Next(); err != io.ErrUnexpectedEOF {
			t.Errorf("%d-byte prefix: err = %v, want io.ErrUnexpectedEOF", len(short), err)
		}
	}
}

// timeoutReader fails once with errTimeout after serving limit bytes, then
// serves the rest, like a connection whose read deadline fired.
type timeoutReader struct {
	r     io.Reader
	limit int
	fired bool
}

var errTimeout = errors.New("i/o timeout")

func (r *timeoutReader) Read(p []byte) (int, error) {
	if !r.fired {
		if r.limit == 0 {
			r.fired = true
			return 0, errTimeout
		}
		p = p[:min(len(p), r.limit)]
		n, err := r.r.Read(p)
		r.limit -= n
		return n, err
	}
	return r.r.Read(p)
}

func TestFramerResumesAfterReadError(t *testing.T) {
	stream, want := streamFrames(t)
	for _, at := range []int{0, 2, 10, len(want[0].frame), len(want[0].frame) + 3} {
		f := NewFramer(&timeoutReader{r: bytes.NewReader(stream), limit: at})
		var got []wantFrame
		sawTimeout := false
		for range len(want) + 2 {
			frame, kind, err := f.Next()
			if errors.Is(err, errTimeout) {
				sawTimeout = true
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("at %d: %v", at, err)
			}
			got = append(got, wantFrame{kind, bytes.Clone(frame)})
		}
		if !sawTimeout || len(got) != len(want) {
			t.Fatalf("at %d: timeout seen %v, %d frames, want %d", at, sawTimeout, len(got), len(want))
		}
		for i := range want {
			if got[i].kind != want[i].kind || !bytes.Equal(got[i].frame, want[i].frame) {
				t.Fatalf("at %d: frame %d differs", at, i)
			}
		}
	}
}

// TestFramerReusesBufferedReader: a *bufio.Reader used to sniff the first
// byte (tcp+tls) is taken over without losing buffered bytes.
func TestFramerReusesBufferedReader(t *testing.T) {
	stream, want := streamFrames(t)
	br := bufio.NewReaderSize(bytes.NewReader(stream), FramerBufferSize)
	if b, err := br.Peek(1); err != nil || Classify(b[0]) != KindSTUN {
		t.Fatalf("sniff: %v", err)
	}
	f := NewFramer(br)
	if f.br != br {
		t.Error("NewFramer wrapped a large enough bufio.Reader")
	}
	if err := readAll(t, f, want); err != io.EOF {
		t.Errorf("final error %v", err)
	}
	// A small bufio.Reader is wrapped, still without losing bytes.
	small := bufio.NewReaderSize(bytes.NewReader(stream), 16)
	if _, err := small.Peek(1); err != nil {
		t.Fatal(err)
	}
	if err := readAll(t, NewFramer(small), want); err != io.EOF {
		t.Errorf("final error %v", err)
	}
}

// replayReader serves stream over and over without allocating.
type replayReader struct {
	stream []byte
	off    int
}

func (r *replayReader) Read(p []byte) (int, error) {
	n := copy(p, r.stream[r.off:])
	r.off = (r.off + n) % len(r.stream)
	return n, nil
}

func TestFramerAllocs(t *testing.T) {
	stream, want := streamFrames(t)
	f := NewFramer(&replayReader{stream: stream})
	if n := testing.AllocsPerRun(2000, func() {
		if _, _, err := f.Next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Framer.Next allocates %.2f times per frame, want 0", n)
	}
	// Still in sync after thousands of frames.
	for range 3 * len(want) {
		if _, _, err := f.Next(); err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkFramer(b *testing.B) {
	stream, want := streamFrames(b)
	f := NewFramer(&replayReader{stream: stream})
	b.ReportAllocs()
	b.SetBytes(int64(len(stream) / len(want)))
	for b.Loop() {
		if _, _, err := f.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFramerBuffered: Buffered says whether Next can return a whole frame
// without reading, for ChannelData (with padding) and STUN.
func TestFramerBuffered(t *testing.T) {
	cd := make([]byte, 4+5+3) // 5-byte payload padded to 8
	PutChannelDataHeader(cd, 0x4000, 5)
	stunMsg := make([]byte, 20+8)
	stunMsg[1] = 0x01
	binary.BigEndian.PutUint16(stunMsg[2:4], 8)
	binary.BigEndian.PutUint32(stunMsg[4:8], 0x2112A442)
	for _, tc := range []struct {
		name   string
		stream []byte
		want   bool
	}{
		{"empty", nil, false},
		{"ChannelData without its padding", cd[:9], false},
		{"ChannelData whole", cd, true},
		{"STUN header only", stunMsg[:20], false},
		{"STUN whole", stunMsg, true},
	} {
		f := NewFramer(bytes.NewReader(tc.stream))
		if len(tc.stream) > 0 {
			_, _ = f.br.Peek(1) // fill the buffer as a previous Next would have
		}
		if got := f.Buffered(); got != tc.want {
			t.Errorf("%s: Buffered = %v, want %v", tc.name, got, tc.want)
		}
	}
	// StreamFrameLen reads the same rules from the first 4 bytes.
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"too short", cd[:3], 0},
		{"ChannelData, padding included", cd[:4], 12},
		{"STUN", stunMsg[:4], 28},
		{"two frames back to back: the first", append(append([]byte(nil), cd...), stunMsg...), 12},
	} {
		if got := StreamFrameLen(tc.b); got != tc.want {
			t.Errorf("StreamFrameLen(%s) = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestFramerGrows: a Framer starts with a small buffer, keeps it for small
// frames, and grows it for a 65 KB frame, which comes out whole, followed
// by the frames after it.
func TestFramerGrows(t *testing.T) {
	big := make([]byte, 65000)
	for i := range big {
		big[i] = byte(i)
	}
	small := make([]byte, 4+100)
	PutChannelDataHeader(small, 0x4001, 100)
	large := make([]byte, 4+PaddedLen(len(big)))
	PutChannelDataHeader(large, 0x4002, len(big))
	copy(large[4:], big)
	stream := append(append(append([]byte(nil), small...), large...), small...)

	f := NewFramer(bytes.NewReader(stream))
	if n := f.BufferSize(); n != FramerInitialSize {
		t.Fatalf("initial buffer %d bytes, want %d", n, FramerInitialSize)
	}
	if frame, _, err := f.Next(); err != nil || len(frame) != len(small) {
		t.Fatalf("first frame: %d bytes, %v", len(frame), err)
	}
	if n := f.BufferSize(); n != FramerInitialSize {
		t.Fatalf("a 104-byte frame grew the buffer to %d", n)
	}
	frame, kind, err := f.Next()
	if err != nil || kind != KindChannelData || !bytes.Equal(frame[4:], big) {
		t.Fatalf("65 KB frame: %d bytes, kind %v, %v", len(frame), kind, err)
	}
	if n := f.BufferSize(); n != FramerBufferSize {
		t.Fatalf("buffer %d bytes after a 65 KB frame, want %d", n, FramerBufferSize)
	}
	if frame, _, err := f.Next(); err != nil || len(frame) != len(small) {
		t.Fatalf("frame after the large one: %d bytes, %v", len(frame), err)
	}
	if _, _, err := f.Next(); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}

	// With a limit, the large frame is refused before its body is read,
	// and the buffer does not grow.
	f = NewFramer(bytes.NewReader(stream))
	f.SetMaxFrame(FramerInitialSize)
	if _, _, err := f.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Next(); !errors.Is(err, ErrNotTURN) {
		t.Fatalf("a 65 KB frame over a 4 KiB limit: %v, want ErrNotTURN", err)
	}
	if n := f.BufferSize(); n != FramerInitialSize {
		t.Fatalf("a refused frame grew the buffer to %d", n)
	}
	f.SetMaxFrame(0)
	if frame, _, err := f.Next(); err != nil || !bytes.Equal(frame[4:], big) {
		t.Fatalf("65 KB frame once the limit is lifted: %d bytes, %v", len(frame), err)
	}
}
