package media

import "errors"

// Errors callers turn into protocol status codes at their edge.
var (
	// ErrAlreadyPublishing: NAME is live or claimed; the first publisher keeps it.
	ErrAlreadyPublishing = errors.New("media: stream is already being published")
	// ErrNotFound: NAME is not live and no on-demand source started it in time.
	ErrNotFound = errors.New("media: stream not found")
	// ErrInvalidName: NAME is empty or not a valid stream name.
	ErrInvalidName = errors.New("media: invalid stream name")
	// ErrNoTracks: Publish without a supported track.
	ErrNoTracks = errors.New("media: no supported track")
	// ErrStreamClosed: the stream ended (AddReader after Close).
	ErrStreamClosed = errors.New("media: stream closed")
	// ErrSlowReader: the reader's queue overflowed and it was dropped.
	ErrSlowReader = errors.New("media: reader too slow, dropped")
	// ErrReaderClosed: Read after the reader's own Close.
	ErrReaderClosed = errors.New("media: reader closed")
	// ErrTableClosed: the Table is shutting down.
	ErrTableClosed = errors.New("media: table closed")
	// ErrTooManyReaders: the stream has Config.MaxReaders readers already.
	ErrTooManyReaders = errors.New("media: too many readers")
	// ErrTooManyViewers: the stream has Config.MaxViewers viewers already.
	ErrTooManyViewers = errors.New("media: too many viewers")
	// ErrTracksDiffer: Stream.Splice with tracks other than the stream's.
	ErrTracksDiffer = errors.New("media: the new source's tracks differ from the stream's")
	// ErrNoSourceClock: Stream.Splice on a stream that never carried its source's clock.
	ErrNoSourceClock = errors.New("media: the stream carries no source clock to continue on")
)
