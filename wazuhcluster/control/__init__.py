"""control package of wazuhcluster."""
