"""Failover: the master elected through etcd, with fenced writes (see README "Failover")."""
