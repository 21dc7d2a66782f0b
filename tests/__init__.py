"""Tests for wazuhcluster."""
