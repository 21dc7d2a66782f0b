"""registry package of wazuhcluster."""
