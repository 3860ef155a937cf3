package bpf

// ExpandRules returns the policy entries rules become in the kernel, sorted
// as Policy.List sorts them (with Packets 0): what Policy.Set would write.
// Callers that keep rules elsewhere use it to check them against the kernel.
func ExpandRules(rules []PolicyRule) ([]PolicyEntry, error) {
	return expandRules(rules)
}
