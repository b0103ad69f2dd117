package allocations

// Remove removes a itself at once (ReasonDeleted), unlike Delete, which
// removes whatever allocation holds a 5-tuple by the time it runs. It
// reports whether a was still in the table. Admin tools use it to end an
// allocation they picked from Range.
func (t *Table) Remove(a *Allocation) bool {
	t.mu.Lock()
	removed := t.removeLocked([]*Allocation{a})
	t.mu.Unlock()
	t.finish(removed, ReasonDeleted)
	return len(removed) > 0
}
