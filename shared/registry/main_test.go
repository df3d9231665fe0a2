package registry

import (
	"log/slog"
	"os"
	"testing"

	"github.com/peergate/peergate/internal/logtest"
)

// libLog collects go-redis's own messages as JSON lines, as a binary with log.format json
// writes them; tests check that they arrive there (and so not unstructured on stderr).
var libLog logtest.Buffer

func TestMain(m *testing.M) {
	RouteLibraryLogs(slog.New(slog.NewJSONHandler(&libLog, nil)))
	os.Exit(m.Run())
}
