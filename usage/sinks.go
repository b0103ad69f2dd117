package usage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// fileSink appends JSON lines to a file, one write and one fsync per
// batch: a record is on disk when it counts as written.
type fileSink struct {
	path string
	f    *os.File
	buf  bytes.Buffer
}

func openFileSink(path string) (*fileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("usage: open the records file: %w", err)
	}
	return &fileSink{path: path, f: f}, nil
}

func (s *fileSink) write(_ context.Context, batch []Record) error {
	s.buf.Reset()
	enc := json.NewEncoder(&s.buf) // Encode ends each record with '\n'
	for i := range batch {
		if err := enc.Encode(&batch[i]); err != nil {
			return fmt.Errorf("usage: encode record %s: %w", batch[i].ID, err)
		}
	}
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("usage: append to %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("usage: fsync %s: %w", s.path, err)
	}
	return nil
}

func (s *fileSink) close() error   { return s.f.Close() }
func (s *fileSink) String() string { return s.path }

// redisSink adds each record to a stream with XADD, trimmed with MAXLEN ~
// (approximate trimming frees whole radix-tree nodes: cheap for Redis),
// one pipeline per batch.
type redisSink struct {
	client *redis.Client
	addr   string
	stream string
	maxLen int64
}

// Timeouts of the Redis client: short, since a write that fails is
// written again, and a dead server must not hold records longer than it
// takes to notice.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 2 * time.Second
)

func newRedisSink(cfg Config) (*redisSink, error) {
	opt, err := redis.ParseURL(cfg.Redis)
	if err != nil {
		return nil, fmt.Errorf("usage: Redis URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
	opt.MaxRetries = -1 // the writer retries whole batches itself
	opt.PoolSize = 2    // one writer goroutine
	// No CLIENT MAINT_NOTIFICATIONS handshake: Redis 7 (Debian's) and
	// Valkey do not know it.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	s := &redisSink{client: redis.NewClient(opt), addr: opt.Addr, stream: cfg.Stream, maxLen: cfg.MaxLen}
	if s.stream == "" {
		s.stream = DefaultStream
	}
	switch {
	case s.maxLen == 0:
		s.maxLen = DefaultMaxLen
	case s.maxLen < 0:
		s.maxLen = 0 // XAddArgs: no MAXLEN
	}
	return s, nil
}

func (s *redisSink) write(ctx context.Context, batch []Record) error {
	pipe := s.client.Pipeline()
	for i := range batch {
		b, err := json.Marshal(&batch[i])
		if err != nil {
			return fmt.Errorf("usage: encode record %s: %w", batch[i].ID, err)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: s.stream, MaxLen: s.maxLen, Approx: s.maxLen > 0,
			Values: []any{"id", batch[i].ID, "record", b},
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("usage: XADD to %s on %s: %w", s.stream, s.addr, err)
	}
	return nil
}

func (s *redisSink) close() error   { return s.client.Close() }
func (s *redisSink) String() string { return "redis://" + s.addr + " " + s.stream }

// CheckRedisURL reports what is wrong with a Redis URL, as New would.
func CheckRedisURL(url string) error {
	_, err := redis.ParseURL(url)
	return err
}
