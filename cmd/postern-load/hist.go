package main

import "time"

// histogram records durations in 1 µs buckets up to histMax; longer ones
// land in one overflow bucket and are reported as histMax. It belongs to one
// goroutine; merge combines them afterwards.
type histogram struct {
	buckets []uint64
	count   uint64
}

const histMax = 100 * time.Millisecond

func newHistogram() *histogram {
	return &histogram{buckets: make([]uint64, histMax/time.Microsecond+1)}
}

// add records d nanoseconds (negative values count as 0).
func (h *histogram) add(d int64) {
	i := max(d, 0) / int64(time.Microsecond)
	if i >= int64(len(h.buckets)) {
		i = int64(len(h.buckets)) - 1
	}
	h.buckets[i]++
	h.count++
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.buckets {
		h.buckets[i] += n
	}
	h.count += o.count
}

// quantile returns the q-quantile (0 < q <= 1) in microseconds, the upper
// edge of its bucket; 0 when nothing was recorded.
func (h *histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.count) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			return float64(i + 1)
		}
	}
	return float64(len(h.buckets))
}
