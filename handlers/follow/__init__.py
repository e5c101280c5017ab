"""The follower runtime: runs a log handler over the log under a lease, isolates failures, replays."""
