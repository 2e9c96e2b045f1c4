"""Support code for bench/run: datasets, tools under test, the benchmark table, reports."""
