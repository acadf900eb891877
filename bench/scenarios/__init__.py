"""The bench's scenarios, one module each, run in this order against one `bench.harness.Harness`
by `bench.perf` (bench/RESULTS.md defines each baseline): lifecycle, votes, fanout, parked (the
fan-out's migrations, so after it), reads, ryw (issue 19's read-your-writes; last, as its
expansions stay open awaiting votes)."""
