"""What tests, benchmarks and the demo use to run real local clusters; never imported by a node."""
