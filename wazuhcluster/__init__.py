"""wazuhcluster: a Wazuh-compatible server cluster built on Twisted."""

__version__ = "0.1.0"

#: The Wazuh release whose agent and cluster behaviour this package follows.
#: Agents newer than this are refused at enrollment, as Wazuh's own manager does.
WAZUH_VERSION = "4.14.7"
