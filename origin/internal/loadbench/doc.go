// Package loadbench holds the origin's fan-out benchmark: one 2 Mbit/s stream to many Go viewers in a child process.
package loadbench
