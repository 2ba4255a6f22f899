"""Benchmarks of program evaluation (issue 7): scripts, not timed tests. See docs/benchmarks.md."""
