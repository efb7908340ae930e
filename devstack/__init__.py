"""The development harness: real servers on free ports and generated data, for tests, benchmarks,
the demo and the smoke test; production code never imports it."""
