"""Which role a node with ``<failover>`` runs, following the election (above master and worker)."""
