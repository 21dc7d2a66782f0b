"""twistd plugin: `twistd -n wazuhcluster --role master|worker`.

Kept import-light on purpose: twistd imports every plugin module to build its
cache, so this file names the tap module as a string and imports nothing else.
"""

from twisted.application.service import ServiceMaker

wazuhcluster = ServiceMaker(
    "wazuhcluster",
    "wazuhcluster.tap",
    "A Wazuh-compatible server cluster node (master or worker).",
    "wazuhcluster",
)
