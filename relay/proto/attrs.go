package proto

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/pion/stun/v4"
)

// Attribute value sizes from RFC 8656 §18.
const (
	channelNumberSize    = 4 // 16-bit number + 16-bit RFFU
	lifetimeSize         = 4 // 32-bit seconds
	requestedTransSize   = 4 // 8-bit protocol + 24-bit RFFU
	evenPortSize         = 1 // R bit + 7 RFFU bits
	reservationTokenSize = 8
	requestedFamilySize  = 4 // 8-bit family + 24-bit RFFU
	connectionIDSize     = 4 // 32-bit identifier (RFC 6062 §6.2.1)
)

// getExact returns the value of attribute t, which must be exactly size
// bytes long. Errors are stun.ErrAttributeNotFound itself (unwrapped: the
// handlers probe for optional attributes on every Allocate, and formatting
// an error each time cost a fifth of the server's CPU at high allocation
// rates) or wrap stun.ErrAttributeSizeInvalid.
func getExact(m *stun.Message, t stun.AttrType, size int) ([]byte, error) {
	v, err := m.Get(t)
	if err != nil {
		return nil, err
	}
	if len(v) != size {
		return nil, fmt.Errorf("proto: %s: length %d, want %d: %w", t, len(v), size, stun.ErrAttributeSizeInvalid)
	}
	return v, nil
}

// ChannelNumber is the CHANNEL-NUMBER attribute (RFC 8656 §18.1): "a 16-bit
// unsigned integer followed by a two-octet RFFU (Reserved For Future Use)
// field, which MUST be set to 0 on transmission and MUST be ignored on
// reception." Neither AddTo nor GetFrom checks the range; the ChannelBind
// handler calls Valid and answers 400 itself.
type ChannelNumber uint16

// Channel number range usable by clients (RFC 8656 §12: "0x4000 through
// 0x4FFF: These values are the allowed channel numbers (4096 possible
// values)"; 0x5000-0x7FFF are reserved to avoid DTLS-SRTP collisions, RFC 7983).
const (
	MinChannelNumber ChannelNumber = 0x4000
	MaxChannelNumber ChannelNumber = 0x4FFF
)

// Valid reports whether n is in the client-usable range 0x4000-0x4FFF.
func (n ChannelNumber) Valid() bool {
	return n >= MinChannelNumber && n <= MaxChannelNumber
}

// AddTo adds CHANNEL-NUMBER to m.
func (n ChannelNumber) AddTo(m *stun.Message) error {
	var v [channelNumberSize]byte
	binary.BigEndian.PutUint16(v[0:2], uint16(n)) // v[2:4] is the zero RFFU
	m.Add(stun.AttrChannelNumber, v[:])
	return nil
}

// GetFrom decodes CHANNEL-NUMBER from m.
func (n *ChannelNumber) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrChannelNumber, channelNumberSize)
	if err != nil {
		return err
	}
	*n = ChannelNumber(binary.BigEndian.Uint16(v[0:2])) // RFFU ignored
	return nil
}

// Lifetime is the LIFETIME attribute (RFC 8656 §18.2): "a 32-bit unsigned
// integral value representing the number of seconds remaining until
// expiration". AddTo truncates to whole seconds and clamps to [0, 2^32-1].
type Lifetime time.Duration

// AddTo adds LIFETIME to m.
func (l Lifetime) AddTo(m *stun.Message) error {
	secs := time.Duration(l) / time.Second
	switch {
	case secs < 0:
		secs = 0
	case secs > math.MaxUint32:
		secs = math.MaxUint32
	}
	var v [lifetimeSize]byte
	binary.BigEndian.PutUint32(v[:], uint32(secs))
	m.Add(stun.AttrLifetime, v[:])
	return nil
}

// GetFrom decodes LIFETIME from m.
func (l *Lifetime) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrLifetime, lifetimeSize)
	if err != nil {
		return err
	}
	// uint32 seconds fit in a Duration (int64 ns) with room to spare.
	*l = Lifetime(time.Duration(binary.BigEndian.Uint32(v)) * time.Second)
	return nil
}

// RequestedTransport is the REQUESTED-TRANSPORT attribute (RFC 8656 §18.8):
// an IP protocol number followed by 24 RFFU bits.
type RequestedTransport uint8

// Protocol numbers for REQUESTED-TRANSPORT: RFC 8656 §18.8 "only allows the
// use of code point 17 (User Datagram Protocol)"; RFC 6062 adds TCP.
const (
	ProtoUDP RequestedTransport = 17
	ProtoTCP RequestedTransport = 6
)

// AddTo adds REQUESTED-TRANSPORT to m.
func (p RequestedTransport) AddTo(m *stun.Message) error {
	v := [requestedTransSize]byte{byte(p)} // RFFU zero
	m.Add(stun.AttrRequestedTransport, v[:])
	return nil
}

// GetFrom decodes REQUESTED-TRANSPORT from m.
func (p *RequestedTransport) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrRequestedTransport, requestedTransSize)
	if err != nil {
		return err
	}
	*p = RequestedTransport(v[0])
	return nil
}

// DontFragment is the DONT-FRAGMENT attribute (RFC 8656 §18.9): "This
// attribute has no value part, and thus, the attribute length field is 0."
type DontFragment struct{}

// AddTo adds DONT-FRAGMENT to m.
func (DontFragment) AddTo(m *stun.Message) error {
	m.Add(stun.AttrDontFragment, nil)
	return nil
}

// GetFrom checks that m carries a well-formed DONT-FRAGMENT.
func (*DontFragment) GetFrom(m *stun.Message) error {
	_, err := getExact(m, stun.AttrDontFragment, 0)
	return err
}

// HasDontFragment reports whether m carries DONT-FRAGMENT, whatever its length.
func HasDontFragment(m *stun.Message) bool {
	return m.Contains(stun.AttrDontFragment)
}

// EvenPort is the EVEN-PORT attribute (RFC 8656 §18.7): one byte whose top
// bit R asks the server to reserve the next-higher port; the other 7 bits are
// RFFU. The attribute is padded to 4 bytes on the wire.
type EvenPort struct {
	// ReservePort is the R bit.
	ReservePort bool
}

const evenPortR = 0x80 // R is the most significant bit

// AddTo adds EVEN-PORT to m.
func (p EvenPort) AddTo(m *stun.Message) error {
	var v [evenPortSize]byte
	if p.ReservePort {
		v[0] = evenPortR
	}
	m.Add(stun.AttrEvenPort, v[:])
	return nil
}

// GetFrom decodes EVEN-PORT from m.
func (p *EvenPort) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrEvenPort, evenPortSize)
	if err != nil {
		return err
	}
	p.ReservePort = v[0]&evenPortR != 0 // RFFU bits ignored
	return nil
}

// ReservationToken is the RESERVATION-TOKEN attribute (RFC 8656 §18.10):
// 8 bytes identifying a relayed address held in reserve.
type ReservationToken []byte

// AddTo adds RESERVATION-TOKEN to m; the token must be 8 bytes.
func (t ReservationToken) AddTo(m *stun.Message) error {
	if len(t) != reservationTokenSize {
		return fmt.Errorf("proto: %s: length %d, want %d: %w",
			stun.AttrReservationToken, len(t), reservationTokenSize, stun.ErrAttributeSizeInvalid)
	}
	m.Add(stun.AttrReservationToken, t)
	return nil
}

// GetFrom copies RESERVATION-TOKEN from m into t, reusing t's capacity. It
// copies (unlike Data) because a token outlives the request: the server
// stores it with the reserved port.
func (t *ReservationToken) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrReservationToken, reservationTokenSize)
	if err != nil {
		return err
	}
	*t = append((*t)[:0], v...)
	return nil
}

// RequestedAddressFamily is the REQUESTED-ADDRESS-FAMILY attribute (RFC 8656
// §18.6): an 8-bit family followed by 24 RFFU bits. GetFrom accepts any
// family value because the server must tell an unknown one apart (RFC 8656
// §7.2: answer 440 Address Family not Supported); use Valid.
type RequestedAddressFamily uint8

// Address family values (RFC 8656 §18.6).
const (
	FamilyIPv4 RequestedAddressFamily = 0x01
	FamilyIPv6 RequestedAddressFamily = 0x02
)

// Valid reports whether f is FamilyIPv4 or FamilyIPv6.
func (f RequestedAddressFamily) Valid() bool {
	return f == FamilyIPv4 || f == FamilyIPv6
}

// AddTo adds REQUESTED-ADDRESS-FAMILY to m.
func (f RequestedAddressFamily) AddTo(m *stun.Message) error {
	v := [requestedFamilySize]byte{byte(f)}
	m.Add(stun.AttrRequestedAddressFamily, v[:])
	return nil
}

// GetFrom decodes REQUESTED-ADDRESS-FAMILY from m.
func (f *RequestedAddressFamily) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrRequestedAddressFamily, requestedFamilySize)
	if err != nil {
		return err
	}
	*f = RequestedAddressFamily(v[0])
	return nil
}

// AttrAdditionalAddressFamily and AttrAddressErrorCode are the dual
// allocation attributes of RFC 8656 §18.10 and §18.13 (pion/stun names
// neither). Both are comprehension-optional (0x8000-0xFFFF): a server that
// does not know them allocates one family, as RFC 8656 §7.3 lets clients
// expect.
const (
	AttrAdditionalAddressFamily stun.AttrType = 0x8000
	AttrAddressErrorCode        stun.AttrType = 0x8001
)

// AdditionalAddressFamily is the ADDITIONAL-ADDRESS-FAMILY attribute (RFC
// 8656 §18.10), encoded as REQUESTED-ADDRESS-FAMILY: "The attribute value
// of 0x02 (IPv6 address) is the only valid value in Allocate request."
// GetFrom accepts any family value; the handler answers 400 to others.
type AdditionalAddressFamily uint8

// AddTo adds ADDITIONAL-ADDRESS-FAMILY to m.
func (f AdditionalAddressFamily) AddTo(m *stun.Message) error {
	v := [requestedFamilySize]byte{byte(f)}
	m.Add(AttrAdditionalAddressFamily, v[:])
	return nil
}

// GetFrom decodes ADDITIONAL-ADDRESS-FAMILY from m.
func (f *AdditionalAddressFamily) GetFrom(m *stun.Message) error {
	v, err := getExact(m, AttrAdditionalAddressFamily, requestedFamilySize)
	if err != nil {
		return err
	}
	*f = AdditionalAddressFamily(v[0])
	return nil
}

// AddressErrorCode is the ADDRESS-ERROR-CODE attribute (RFC 8656 §18.13):
// in the success response to a dual Allocate that got one family only, the
// family that was not allocated and why ("The error code value signaled in
// the ADDRESS-ERROR-CODE attribute could be 440 (Address Family not
// Supported) or 508 (Insufficient Capacity)", §7.2). Its value is an 8-bit
// family, 13 reserved bits, the 3-bit class and 8-bit number of the error
// code (as in ERROR-CODE), then the UTF-8 reason phrase.
type AddressErrorCode struct {
	Family RequestedAddressFamily
	Code   stun.ErrorCode
	Reason string
}

// addressErrorHeaderSize is the fixed part of ADDRESS-ERROR-CODE; its
// reason phrase is at most 763 bytes, as ERROR-CODE's (RFC 8489 §14.8).
const (
	addressErrorHeaderSize = 4
	maxReasonSize          = 763
)

// AddTo adds ADDRESS-ERROR-CODE to m.
func (e AddressErrorCode) AddTo(m *stun.Message) error {
	if e.Code < 300 || e.Code > 699 {
		return fmt.Errorf("proto: %s: code %d outside 300-699: %w", AttrAddressErrorCode, e.Code, stun.ErrAttributeSizeInvalid)
	}
	if len(e.Reason) > maxReasonSize {
		return fmt.Errorf("proto: %s: reason of %d bytes: %w", AttrAddressErrorCode, len(e.Reason), stun.ErrAttributeSizeOverflow)
	}
	v := make([]byte, addressErrorHeaderSize, addressErrorHeaderSize+len(e.Reason))
	v[0] = byte(e.Family)
	v[2] = byte(e.Code / 100)
	v[3] = byte(e.Code % 100)
	m.Add(AttrAddressErrorCode, append(v, e.Reason...))
	return nil
}

// GetFrom decodes ADDRESS-ERROR-CODE from m. A class outside 3-6 or a
// number above 99 is malformed (RFC 8489 §14.8).
func (e *AddressErrorCode) GetFrom(m *stun.Message) error {
	v, err := m.Get(AttrAddressErrorCode)
	if err != nil {
		return err
	}
	if len(v) < addressErrorHeaderSize || len(v) > addressErrorHeaderSize+maxReasonSize {
		return fmt.Errorf("proto: %s: length %d: %w", AttrAddressErrorCode, len(v), stun.ErrAttributeSizeInvalid)
	}
	class, number := v[2]&0x07, v[3]
	if class < 3 || class > 6 || number > 99 {
		return fmt.Errorf("proto: %s: error code %d.%02d: %w", AttrAddressErrorCode, class, number, stun.ErrAttributeSizeInvalid)
	}
	*e = AddressErrorCode{
		Family: RequestedAddressFamily(v[0]),
		Code:   stun.ErrorCode(int(class)*100 + int(number)),
		Reason: string(v[addressErrorHeaderSize:]),
	}
	return nil
}

// Data is the DATA attribute (RFC 8656 §18.4): the application data of Send
// and Data indications.
type Data []byte

// AddTo adds DATA to m (the bytes are copied into m.Raw).
func (d Data) AddTo(m *stun.Message) error {
	if len(d) > math.MaxUint16 {
		return fmt.Errorf("proto: %s: length %d: %w", stun.AttrData, len(d), stun.ErrAttributeSizeOverflow)
	}
	m.Add(stun.AttrData, d)
	return nil
}

// GetFrom sets d to the DATA value in m without copying: d aliases m.Raw and
// is valid only as long as m.Raw is.
func (d *Data) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrData)
	if err != nil {
		return fmt.Errorf("proto: %s: %w", stun.AttrData, err)
	}
	*d = v
	return nil
}

// ConnectionID is the CONNECTION-ID attribute (RFC 6062 §6.2.1): "The
// CONNECTION-ID attribute uniquely identifies a peer data connection. It is
// a 32-bit unsigned integral value." The server sends it in a Connect
// success response and a ConnectionAttempt indication; the client returns it
// in the ConnectionBind request of a new connection.
type ConnectionID uint32

// AddTo adds CONNECTION-ID to m.
func (c ConnectionID) AddTo(m *stun.Message) error {
	var v [connectionIDSize]byte
	binary.BigEndian.PutUint32(v[:], uint32(c))
	m.Add(stun.AttrConnectionID, v[:])
	return nil
}

// GetFrom decodes CONNECTION-ID from m; a value of another length than 4
// bytes is an error wrapping stun.ErrAttributeSizeInvalid.
func (c *ConnectionID) GetFrom(m *stun.Message) error {
	v, err := getExact(m, stun.AttrConnectionID, connectionIDSize)
	if err != nil {
		return err
	}
	*c = ConnectionID(binary.BigEndian.Uint32(v))
	return nil
}
