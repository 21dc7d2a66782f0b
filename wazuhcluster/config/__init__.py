"""The node's home and configuration: every option of etc/wazuh-manager.conf is read and
checked here, before the reactor starts.
"""
