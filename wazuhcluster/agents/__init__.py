"""agents package of wazuhcluster."""
