package proto

import (
	"testing"

	"github.com/pion/stun/v4"
)

// testTxID is a fixed transaction ID so encodings are reproducible.
var testTxID = [stun.TransactionIDSize]byte{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}

// build encodes a message of type typ with transaction ID testTxID and the
// given setters, then decodes a copy of its bytes as a receiver would.
func build(t testing.TB, typ stun.MessageType, setters ...stun.Setter) *stun.Message {
	t.Helper()
	all := append([]stun.Setter{typ, stun.NewTransactionIDSetter(testTxID)}, setters...)
	m, err := stun.Build(all...)
	if err != nil {
		t.Fatalf("stun.Build: %v", err)
	}
	return decode(t, m.Raw)
}

// decode decodes a copy of raw with pion.
func decode(t testing.TB, raw []byte) *stun.Message {
	t.Helper()
	m := new(stun.Message)
	if err := stun.Decode(raw, m); err != nil {
		t.Fatalf("stun.Decode: %v", err)
	}
	return m
}

// rawAttr is a setter adding an attribute with arbitrary bytes, to feed
// decoders malformed values.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.t, a.v)
	return nil
}

// setterFunc adapts a function to stun.Setter.
type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }
