"""What an operator runs: the console scripts (wazuh-cluster-control, wazuh-cluster-certs,
wazuh-cluster-ruleset, wazuh-logtest, wazuh-agent-sim), the load-balancer renderer
(``python -m wazuhcluster.scripts.nginx``) and the demo (``make demo``)."""
