package allocations

// Remove removes a at once (ReasonDeleted) and reports whether it was still
// in the table. Admin tools use it to end an allocation they picked from
// Range; Delete finds the allocation by its 5-tuple first.
func (t *Table) Remove(a *Allocation) bool {
	t.mu.Lock()
	removed := t.removeLocked([]*Allocation{a})
	t.mu.Unlock()
	t.finish(removed, ReasonDeleted)
	return len(removed) > 0
}
