"""wire package of wazuhcluster."""
