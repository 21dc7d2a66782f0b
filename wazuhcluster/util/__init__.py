"""Plumbing every room uses: logs, periodic tasks, threads, atomic files, signals, memory,
connection limits and TLS. Imports nothing else of wazuhcluster.
"""
