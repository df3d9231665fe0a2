package media

import "context"

// Reader takes units from one stream through a bounded queue.
type Reader struct {
	s       *Stream
	ch      chan Unit
	err     error // set before ch is closed
	waitKey bool  // guarded by s.mu
}

// Stream is the stream read.
func (r *Reader) Stream() *Stream { return r.s }

// Read returns the next unit; io.EOF when the publisher left, ErrSlowReader when the queue
// overflowed, ErrReaderClosed after Close, or ctx.Err().
func (r *Reader) Read(ctx context.Context) (Unit, error) {
	select {
	case u, ok := <-r.ch:
		if !ok {
			return Unit{}, r.err
		}
		return u, nil
	case <-ctx.Done():
		return Unit{}, ctx.Err()
	}
}

// C is the queue itself, for select loops; when it is closed, Err says why.
func (r *Reader) C() <-chan Unit { return r.ch }

// Err is why C was closed (io.EOF, ErrSlowReader, ErrReaderClosed); valid once C is closed.
func (r *Reader) Err() error { return r.err }

// Close detaches the reader; safe to call more than once and after the stream ended.
func (r *Reader) Close() {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.dropLocked(r, ErrReaderClosed)
}
