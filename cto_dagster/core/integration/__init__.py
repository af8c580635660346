"""Integration: a stage's task branches merged on an integration branch, its checks and
repair, which levels each stage merges, old branches pruned, pull requests."""
