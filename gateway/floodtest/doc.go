// Package floodtest holds the gateway's connection-flood test: the real RTSP and HTTP
// listeners, configured with the shipped defaults, keep serving a fresh client while one
// host holds 11,000 idle connections to each (go test -v ./gateway/floodtest logs the p99).
package floodtest
