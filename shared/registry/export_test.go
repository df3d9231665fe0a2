package registry

// Key names for the external tests, which must find the Cluster node holding them.

func EventsKey(clusterKey string) string { return keyspace{Namespace(clusterKey)}.events() }
func IndexKey(clusterKey string) string  { return keyspace{Namespace(clusterKey)}.origins() }
func RecKey(clusterKey, id string) string {
	return keyspace{Namespace(clusterKey)}.rec(id)
}

// LibLogLines are the go-redis messages logged so far in this test binary, one JSON object a line.
func LibLogLines() []string { return libLog.Lines() }
