package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// nonceKeySize is the size of a nonce key drawn here, in bytes.
const nonceKeySize = 32

// MinNonceKeyFile is the shortest nonce key file accepted, in bytes after
// trimming white space (auth.Config.NonceKey wants 16 bytes; a hex file of
// 32 characters holds 16).
const MinNonceKeyFile = 32

// ReadNonceKeyFile reads a nonce key file: its contents, white space
// trimmed, are the key. Errors say how to make one.
func ReadNonceKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the nonce key: %w (make one with `openssl rand -hex 32 > %s`)", err, path)
	}
	key := strings.TrimSpace(string(b))
	if len(key) < MinNonceKeyFile {
		return nil, fmt.Errorf("nonce key file %s holds %d bytes, want at least %d (make one with `openssl rand -hex 32 > %s`)",
			path, len(key), MinNonceKeyFile, path)
	}
	return []byte(key), nil
}

// NonceKey returns the fleet's nonce key, so that a nonce one node issued
// validates on every node (auth.Config.NonceKey): the key in Redis, which
// the first node to ask puts there (SETNX of a random key; the others read
// it). When Redis cannot be reached it returns a random key of this node
// alone and the error: nonces of other nodes then get one 438 Stale Nonce
// and a fresh nonce, which clients retry (RFC 8489 §9.2.4), until a restart
// with Redis; a nonce_key_file avoids that dependency (SetNonceKey).
// Later heartbeats write the key back if Redis loses it.
func (n *Node) NonceKey(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, nonceKeySize)
	_, _ = rand.Read(fresh) // never fails (crypto/rand)
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout*5)
	defer cancel()
	if _, err := n.rdb.SetNX(ctx, keyNonceKey, hex.EncodeToString(fresh), 0).Result(); err != nil {
		n.failed("sharing the nonce key", err)
		return fresh, fmt.Errorf("cluster: sharing the nonce key: %w", err)
	}
	s, err := n.rdb.Get(ctx, keyNonceKey).Result()
	if err != nil {
		n.failed("reading the nonce key", err)
		return fresh, fmt.Errorf("cluster: reading the nonce key: %w", err)
	}
	key, err := hex.DecodeString(s)
	if err != nil || len(key) < 16 {
		return fresh, fmt.Errorf("cluster: %s in Redis is not at least 16 bytes in hex: delete it and restart the nodes", keyNonceKey)
	}
	n.nonceKey.Store(&key)
	return key, nil
}
