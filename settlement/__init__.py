"""Settlement with partner banks: cycles, net positions, files, reconciliation (issue 8)."""
