package usage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/relay"
)

// stuckSink blocks each write until released, and keeps what it wrote.
type stuckSink struct {
	got     chan []Record // each batch as it arrives
	release chan error    // the result of the write
	mu      sync.Mutex
	written []string
	closed  bool
}

func (s *stuckSink) write(ctx context.Context, batch []Record) error {
	s.got <- append([]Record(nil), batch...)
	select {
	case err := <-s.release:
		if err == nil {
			s.mu.Lock()
			for _, r := range batch {
				s.written = append(s.written, r.ID)
			}
			s.mu.Unlock()
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (s *stuckSink) close() error   { s.closed = true; return nil }
func (s *stuckSink) String() string { return "stuck" }

func newStuckWriter(queue int) (*Writer, *stuckSink) {
	s := &stuckSink{got: make(chan []Record, 10), release: make(chan error)}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		node: "n", sink: s, log: slog.New(slog.NewTextHandler(io.Discard, nil)), queue: make([]Record, queue),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel,
	}
	go w.run()
	return w, s
}

func rec(seq int) relay.UsageRecord { return relay.UsageRecord{Session: "s", Seq: uint32(seq)} }

// TestQueueDropsOldest: while the sink is stuck, Record never waits; a
// full queue drops its oldest record and counts it; a failed write is
// counted and retried; Close writes what is left.
func TestQueueDropsOldest(t *testing.T) {
	w, s := newStuckWriter(3)
	w.Record(rec(0))
	<-s.got // the writer holds record 0, the sink is stuck
	start := time.Now()
	for i := 1; i <= 4; i++ {
		w.Record(rec(i)) // 1 is pushed out by 4
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Record waited %v for a stuck sink", d)
	}
	if c := w.UsageCounts(); c.Dropped != 1 {
		t.Errorf("dropped %d, want 1", c.Dropped)
	}
	s.release <- errors.New("down") // the first write fails...
	<-s.got                         // ...and is tried again
	s.release <- nil
	if got := <-s.got; len(got) != 3 || got[0].Seq != 2 || got[2].Seq != 4 {
		t.Errorf("second batch %v, want records 2, 3, 4", got)
	}
	s.release <- nil
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"n/s:0", "n/s:2", "n/s:3", "n/s:4"}
	if !slices.Equal(s.written, want) {
		t.Errorf("written %v, want %v", s.written, want)
	}
	if c := w.UsageCounts(); c.Written != 4 || c.Dropped != 1 || c.WriteErrors != 1 || !s.closed {
		t.Errorf("counts %+v closed %v, want 4 written, 1 dropped, 1 error, closed", c, s.closed)
	}
}

// TestCloseGivesUp: Close with a deadline while the sink is stuck returns
// an error naming the records it could not write, and counts them dropped.
func TestCloseGivesUp(t *testing.T) {
	w, s := newStuckWriter(10)
	w.Record(rec(0))
	<-s.got
	w.Record(rec(1))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); err == nil {
		t.Fatal("Close with a stuck sink: no error")
	}
	if c := w.UsageCounts(); c.Dropped != 2 || c.Written != 0 {
		t.Errorf("counts %+v, want 2 dropped", c)
	}
}

// nopSink writes nothing, at once.
type nopSink struct{}

func (nopSink) write(context.Context, []Record) error { return nil }
func (nopSink) close() error                          { return nil }
func (nopSink) String() string                        { return "nop" }

// BenchmarkRecord is what the relay pays per record (at an allocation's
// end, or per interim record): conversion and the queue.
func BenchmarkRecord(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		node: "node-a", sink: nopSink{}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), queue: make([]Record, DefaultQueueSize),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel,
	}
	go w.run()
	defer func() { _ = w.Close(context.Background()) }()
	r := relay.UsageRecord{Session: "dnehwvd4agm1-42", User: "alice", Username: "1767312000:alice", Realm: "example.org",
		Transport: "udp", Start: time.Now(), PeriodStart: time.Now(), End: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		w.Record(r)
	}
}
