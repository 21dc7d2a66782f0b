"""integrity package of wazuhcluster."""
