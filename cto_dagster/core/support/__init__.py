"""What every part of the core shares: task ids and the names derived from them, graph passes,
walks of untrusted trees, process identities, mappings, the work limits, step folders. Below
`git/`, `taskmaster/` and `agents/`, so it imports none of them."""
