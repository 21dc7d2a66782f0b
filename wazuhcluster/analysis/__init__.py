"""analysis package of wazuhcluster."""
