"""worker package of wazuhcluster."""
