package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/relay"
)

// Defaults of Config.
const (
	// DefaultStream is the Redis stream's key.
	DefaultStream = "postern:usage"
	// DefaultMaxLen trims the stream to about a million entries (XADD
	// MAXLEN ~): at about 600 bytes each, some 600 MB of Redis memory, and
	// days of records of a busy fleet for consumers to fall behind by.
	DefaultMaxLen = 1_000_000
	// DefaultQueueSize is how many records wait for a slow or absent sink
	// before the oldest are dropped: about 5 MB, a Redis outage of
	// minutes at hundreds of allocations ending per second.
	DefaultQueueSize = 10_000
	// maxBatch is the most records written (and fsynced, or pipelined)
	// at once.
	maxBatch = 256
	// writeTimeout bounds one batch's write to Redis.
	writeTimeout = 5 * time.Second
	// minBackoff and maxBackoff bound the wait before a failed batch is
	// written again.
	minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
)

// Config configures a Writer. Exactly one of File and Redis is used:
// Redis when it is set.
type Config struct {
	// Node names this server in every record (cluster.node, or the host
	// name).
	Node string
	// File is the JSONL file records are appended to.
	File string
	// Redis is the redis:// or rediss:// URL of the server holding the
	// stream.
	Redis string
	// Stream is the stream's key; DefaultStream when empty.
	Stream string
	// MaxLen trims the stream to about MaxLen entries; DefaultMaxLen when
	// zero, no trimming when negative.
	MaxLen int64
	// QueueSize bounds the records waiting to be written;
	// DefaultQueueSize when zero.
	QueueSize int
	// Logger receives outage and recovery lines; slog.Default() when nil.
	Logger *slog.Logger
}

// sink writes a batch of records: all of them, or an error (after which
// the batch is written again: a sink may then hold some records twice).
type sink interface {
	write(ctx context.Context, batch []Record) error
	close() error
	String() string
}

// Writer queues usage records from the relay (it is a relay.UsageSink and
// relay.UsageCounter) and writes them to the file or the stream from one
// goroutine, which New starts and Close stops.
type Writer struct {
	node string
	sink sink
	log  *slog.Logger

	mu      sync.Mutex
	queue   []Record // ring buffer of len QueueSize
	head, n int
	closing bool

	wake   chan struct{} // a record was queued (capacity 1)
	stop   chan struct{} // Close was called
	done   chan struct{} // the goroutine ended
	ctx    context.Context
	cancel context.CancelFunc

	written, dropped, writeErrors atomic.Uint64
}

// New opens the sink cfg names and starts the writer's goroutine.
func New(cfg Config) (*Writer, error) {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var s sink
	var err error
	switch {
	case cfg.Redis != "":
		s, err = newRedisSink(cfg)
	case cfg.File != "":
		s, err = openFileSink(cfg.File)
	default:
		err = errors.New("usage: neither a file nor a Redis URL given")
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		node: cfg.Node, sink: s, log: cfg.Logger,
		queue: make([]Record, cfg.QueueSize),
		wake:  make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go w.run()
	return w, nil
}

// Record queues r: it implements relay.UsageSink and never waits. When the
// queue is full the oldest record is dropped and counted.
func (w *Writer) Record(r relay.UsageRecord) {
	rec := FromRelay(w.node, r)
	w.mu.Lock()
	if w.n == len(w.queue) {
		w.queue[w.head] = Record{}
		w.head = (w.head + 1) % len(w.queue)
		w.n--
		w.dropped.Add(1)
	}
	w.queue[(w.head+w.n)%len(w.queue)] = rec
	w.n++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// UsageCounts implements relay.UsageCounter.
func (w *Writer) UsageCounts() relay.UsageCounts {
	return relay.UsageCounts{Written: w.written.Load(), Dropped: w.dropped.Load(), WriteErrors: w.writeErrors.Load()}
}

// Queued is how many records wait to be written.
func (w *Writer) Queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Close writes what is queued, waiting up to ctx (records still queued
// then are dropped and counted), stops the goroutine and closes the sink.
// Records given after Close are queued but never written.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closing = true
	w.mu.Unlock()
	close(w.stop)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel() // abandon the batch being written
		<-w.done
	}
	w.cancel()
	w.mu.Lock()
	lost := w.n
	w.mu.Unlock()
	w.dropped.Add(uint64(lost))
	err := w.sink.close()
	if lost > 0 {
		return fmt.Errorf("usage: %d records not written to %v: %w", lost, w.sink, ctx.Err())
	}
	return err
}

// take removes up to maxBatch records from the queue.
func (w *Writer) take(batch []Record) []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n > 0 && len(batch) < maxBatch {
		batch = append(batch, w.queue[w.head])
		w.queue[w.head] = Record{}
		w.head = (w.head + 1) % len(w.queue)
		w.n--
	}
	return batch
}

// run writes batches until Close: after stop, until the queue is empty.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Record, 0, maxBatch)
	stopping := false
	for {
		batch = w.take(batch[:0])
		if len(batch) == 0 {
			if stopping {
				return
			}
			select {
			case <-w.wake:
			case <-w.stop:
				stopping = true
			case <-w.ctx.Done():
				return
			}
			continue
		}
		if !w.write(batch) {
			return
		}
	}
}

// write writes batch, again and again with a growing pause until it
// succeeds (true) or the writer is cancelled (false; the batch is counted
// dropped). Meanwhile the queue fills, and drops its oldest when full.
func (w *Writer) write(batch []Record) bool {
	backoff := minBackoff
	failing := false
	for {
		ctx, cancel := context.WithTimeout(w.ctx, writeTimeout)
		err := w.sink.write(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(uint64(len(batch)))
			if failing {
				w.log.Info("usage records: writing again", "sink", w.sink.String())
			}
			return true
		}
		w.writeErrors.Add(1)
		if !failing {
			// One line per outage, not per retry.
			w.log.Warn("usage records: write failed; retrying (records queue meanwhile, the oldest dropped when full)",
				"sink", w.sink.String(), "err", err)
			failing = true
		}
		select {
		case <-time.After(backoff):
		case <-w.ctx.Done():
			w.dropped.Add(uint64(len(batch)))
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
