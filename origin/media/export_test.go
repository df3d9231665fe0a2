package media

// Waiting reports whether a reader waits in Find for name: the sync point of tests that
// change a name under a waiting reader.
func (t *Table) Waiting(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.waiters[name]
	return ok
}
