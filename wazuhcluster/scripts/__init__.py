"""The console scripts (wazuh-cluster-control, wazuh-cluster-certs, wazuh-logtest,
wazuh-agent-sim) and the demo."""
