package certwatch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Quiet is how long the files must stay unchanged before a change is
// signalled: a renewal writes the chain and the key one after the other.
const Quiet = 500 * time.Millisecond

// Watch watches the directories of files and sends on changed (without
// blocking) once any of them has changed and then been quiet for Quiet. It
// watches directories, not files, because certbot and most renewal tools
// replace files or re-point symlinks rather than writing in place. Errors
// of the watcher itself are logged to log and watching goes on. It returns
// when ctx is done, or at once with an error when the files cannot be
// watched.
func Watch(ctx context.Context, changed chan<- struct{}, log *slog.Logger, files ...string) error {
	w, names, err := watcher(files)
	if err != nil {
		return err
	}
	return run(ctx, w, names, changed, log)
}

// Start is Watch that returns once the files are watched, so that a
// change made after it returns is seen; watching goes on in a goroutine
// until ctx is done, and done is closed then.
func Start(ctx context.Context, changed chan<- struct{}, log *slog.Logger, files ...string) (done <-chan struct{}, err error) {
	w, names, err := watcher(files)
	if err != nil {
		return nil, err
	}
	d := make(chan struct{})
	go func() {
		defer close(d)
		_ = run(ctx, w, names, changed, log) // its errors are logged
	}()
	return d, nil
}

// watcher watches the directories of files; names are their absolute
// paths.
func watcher(files []string) (*fsnotify.Watcher, map[string]bool, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, nil, fmt.Errorf("watch certificate files: %w", err)
	}
	names := map[string]bool{}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			w.Close()
			return nil, nil, fmt.Errorf("watch %s: %w", f, err)
		}
		names[abs] = true
		if err := w.Add(filepath.Dir(abs)); err != nil {
			w.Close()
			return nil, nil, fmt.Errorf("watch %s: %w", filepath.Dir(abs), err)
		}
	}
	return w, names, nil
}

// run signals changes of names until ctx is done, then closes w.
func run(ctx context.Context, w *fsnotify.Watcher, names map[string]bool, changed chan<- struct{}, log *slog.Logger) error {
	defer w.Close()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if abs, _ := filepath.Abs(ev.Name); names[abs] {
				quiet.Reset(Quiet)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching the certificate files", "err", err)
		case <-quiet.C:
			select {
			case changed <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}
}
