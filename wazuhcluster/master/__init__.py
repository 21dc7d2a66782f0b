"""master package of wazuhcluster."""
