"""What tests, benchmarks and the demo use: real local clusters (devcluster) and where Wazuh's
reference data is found (reference). Never imported by a node."""
