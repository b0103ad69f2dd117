package proto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Stream frame size limits. Sizes are computed in int from 16-bit fields, so
// they cannot wrap (pion/turn before v5.1 and coturn #1837 spun on a 16-bit
// wrap here); the caps are checked anyway so that a future change to the
// arithmetic cannot make Peek ask for more than the buffer holds.
const (
	// MaxSTUNFrame is the largest STUN message on a stream: 20-byte header
	// plus a 16-bit length.
	MaxSTUNFrame = stunHeaderSize + 0xFFFF
	// MaxChannelDataFrame is the largest ChannelData message on a stream,
	// padding included: 4-byte header, 16-bit length, up to 3 padding bytes.
	MaxChannelDataFrame = ChannelDataHeaderSize + 0xFFFF + 3

	// FramerBufferSize holds the largest frame of either kind: a Framer's
	// buffer grows to this size at most.
	FramerBufferSize = 64<<10 + 64
	// FramerInitialSize is the buffer a Framer starts with when not given
	// a *bufio.Reader: every STUN request and most media frames fit, and
	// a connection that never sends a larger frame never holds more.
	FramerInitialSize = 4 << 10
)

// Framer splits a TURN byte stream (TCP or TLS, RFC 8656 §12.5) into STUN and
// ChannelData messages. A Framer belongs to one goroutine.
//
// It reads through a bufio.Reader and hands out frames that point into its
// buffer, so the steady state allocates nothing. The buffer starts small
// and grows, once, to FramerBufferSize when a frame needs more room: an
// idle connection holds a few KiB, not 64 (SetMaxFrame bounds how large a
// frame may make it grow). A frame that cannot be
// TURN yields ErrNotTURN: the stream has lost framing for good and the caller
// should close the connection. Nothing is consumed on an error, so calling
// Next again returns the same error; it never loops.
//
// RFC 7983 demultiplexing is by first byte only, so some foreign protocols
// look like ChannelData: an HTTP "GET" starts with 0x47. Such a stream frames
// as ChannelData on a channel the client never bound (which the relay drops)
// until it fails; the relay's idle timeouts end it.
type Framer struct {
	br  *bufio.Reader
	max int // largest frame accepted, padding included; 0: MaxChannelDataFrame
}

// NewFramer returns a Framer reading r. If r is a *bufio.Reader (e.g. one
// used to sniff the first byte for tcp+tls) it is used as is, whatever its
// size, so no buffered byte is lost; otherwise r is read through a
// bufio.Reader of FramerInitialSize. Either grows when a frame needs it.
func NewFramer(r io.Reader) *Framer {
	if br, ok := r.(*bufio.Reader); ok {
		return &Framer{br: br}
	}
	return &Framer{br: bufio.NewReaderSize(r, FramerInitialSize)}
}

// SetMaxFrame bounds the frames Next accepts, stream padding included: a
// larger one is ErrNotTURN before its body is read, so it cannot make the
// buffer grow. n <= 0, or above the protocol's own limits, restores them.
// The relay keeps connections that have not allocated to small frames.
func (f *Framer) SetMaxFrame(n int) {
	if n <= 0 || n > MaxChannelDataFrame {
		n = 0
	}
	f.max = n
}

// Peek returns the next n bytes without consuming them (n at most
// FramerBufferSize), reading if need be; the slice is valid until the
// next call. The relay looks at a frame's first byte with it.
func (f *Framer) Peek(n int) ([]byte, error) {
	f.grow(n)
	return f.br.Peek(n)
}

// grow makes sure the buffer holds n bytes. It grows once, to
// FramerBufferSize: the new reader drains the old one's buffered bytes
// before it reads on, so nothing is lost, and the old one passes the new
// one's large reads straight through.
func (f *Framer) grow(n int) {
	if n > f.br.Size() {
		f.br = bufio.NewReaderSize(f.br, FramerBufferSize)
	}
}

// BufferSize returns the size of the buffer frames are read into now.
func (f *Framer) BufferSize() int { return f.br.Size() }

// Reader returns the reader the framer reads through: its buffered bytes
// are the stream's next bytes, for a caller that stops framing and reads
// the rest of the stream itself (an RFC 6062 data connection).
func (f *Framer) Reader() *bufio.Reader { return f.br }

// Buffered reports whether the next whole frame is already buffered, so
// that Next returns it without reading (the relay flushes its send batch
// before a read could block). It applies Next's framing rules to the
// header and never consumes anything.
func (f *Framer) Buffered() bool {
	n := f.br.Buffered()
	if n < ChannelDataHeaderSize {
		return false
	}
	hdr, err := f.br.Peek(ChannelDataHeaderSize)
	if err != nil {
		return false
	}
	return n >= StreamFrameLen(hdr)
}

// StreamFrameLen returns how many bytes of a TCP/TLS stream the frame that
// starts b takes, ChannelData padding included (RFC 8656 §12.5), from its
// first 4 bytes; 0 if b is shorter. It applies Next's framing rules without
// validating the frame: Next does that.
func StreamFrameLen(b []byte) int {
	if len(b) < ChannelDataHeaderSize {
		return 0
	}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	if Classify(b[0]) == KindChannelData {
		return ChannelDataHeaderSize + PaddedLen(length)
	}
	return stunHeaderSize + length
}

// Next returns the next whole message and its kind (KindSTUN or
// KindChannelData). A STUN frame is the 20-byte header plus its length; a
// ChannelData frame is the 4-byte header plus its length, with the stream
// padding consumed but not included. The frame is valid until the next call.
//
// Errors: io.EOF at a clean frame boundary; io.ErrUnexpectedEOF if the stream
// ends inside a frame; ErrNotTURN (wrapped) for a first byte that is neither
// STUN nor ChannelData (RFC 7983), a bad magic cookie or a STUN length that is
// not a multiple of 4; other read errors (deadlines, resets) as returned by
// the underlying reader, after which Next may be called again.
func (f *Framer) Next() (frame []byte, kind Kind, err error) {
	hdr, err := f.peek(ChannelDataHeaderSize, true)
	if err != nil {
		return nil, KindUnknown, err
	}
	var frameLen, consume int
	switch kind = Classify(hdr[0]); kind {
	case KindSTUN:
		if hdr, err = f.peek(stunHeaderSize, false); err != nil {
			return nil, KindUnknown, err
		}
		// RFC 8489 §5: "the message length MUST contain the size of the
		// message in bytes, not including the 20-byte STUN header. Since all
		// STUN attributes are padded to a multiple of 4 bytes, the last 2
		// bits of this field are always zero."
		n := int(binary.BigEndian.Uint16(hdr[2:4]))
		if n%4 != 0 {
			return nil, KindUnknown, fmt.Errorf("proto: framer: STUN length %d not a multiple of 4: %w", n, ErrNotTURN)
		}
		// RFC 8489 §5: "The Magic Cookie field MUST contain the fixed value
		// 0x2112A442".
		if c := binary.BigEndian.Uint32(hdr[4:8]); c != magicCookie {
			return nil, KindUnknown, fmt.Errorf("proto: framer: magic cookie %#08x: %w", c, ErrNotTURN)
		}
		frameLen = stunHeaderSize + n
		consume = frameLen
		if frameLen > MaxSTUNFrame {
			return nil, KindUnknown, fmt.Errorf("proto: framer: STUN frame of %d bytes: %w", frameLen, ErrNotTURN)
		}
	case KindChannelData:
		// The first byte being 0x40-0x4F already puts the number in
		// 0x4000-0x4FFF (RFC 8656 §12); checked again in case Classify changes.
		if num := binary.BigEndian.Uint16(hdr[0:2]); !ChannelNumber(num).Valid() {
			return nil, KindUnknown, fmt.Errorf("proto: framer: channel %#04x: %w", num, ErrNotTURN)
		}
		// RFC 8656 §12.5: "Over TCP and TLS-over-TCP, the ChannelData message
		// MUST be padded to a multiple of four bytes ... The padding is not
		// reflected in the length field".
		n := int(binary.BigEndian.Uint16(hdr[2:4]))
		frameLen = ChannelDataHeaderSize + n
		consume = ChannelDataHeaderSize + PaddedLen(n)
		if consume > MaxChannelDataFrame {
			return nil, KindUnknown, fmt.Errorf("proto: framer: ChannelData frame of %d bytes: %w", consume, ErrNotTURN)
		}
	default:
		return nil, KindUnknown, fmt.Errorf("proto: framer: first byte %#02x (%s): %w", hdr[0], kind, ErrNotTURN)
	}
	if f.max > 0 && consume > f.max {
		return nil, KindUnknown, fmt.Errorf("proto: framer: %s frame of %d bytes over the limit of %d: %w", kind, consume, f.max, ErrNotTURN)
	}
	b, err := f.peek(consume, false)
	if err != nil {
		return nil, KindUnknown, err
	}
	// Discard within the buffered bytes only advances the read index, so b
	// stays valid until the next Peek refills the buffer.
	if _, err := f.br.Discard(consume); err != nil {
		return nil, KindUnknown, fmt.Errorf("proto: framer: discard: %w", err)
	}
	return b[:frameLen:frameLen], kind, nil
}

// peek returns the next n buffered bytes. A stream that ends before n bytes
// yields io.ErrUnexpectedEOF, unless atBoundary and no byte at all was
// read, which is a clean io.EOF.
func (f *Framer) peek(n int, atBoundary bool) ([]byte, error) {
	f.grow(n)
	b, err := f.br.Peek(n)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, io.EOF):
		if atBoundary && len(b) == 0 {
			return nil, io.EOF
		}
		return nil, io.ErrUnexpectedEOF
	default:
		return nil, err
	}
}
