"""Wazuh-compatible event analysis: decoders, rules and CDB lists -> alert records.

Pure logic, no network and no reactor. The pieces, in pipeline order:

* :mod:`.predecoder` -- split a syslog-style header (timestamp, hostname, program name).
* :mod:`.expressions` -- Wazuh's osregex, osmatch, pcre2 and string expressions on ``re``.
* :mod:`.decoders` / :mod:`.decoder_loader` -- decoder tree, offsets, JSON_Decoder plugin.
* :mod:`.rules` / :mod:`.rule_loader` -- rule tree, conditions, correlation state.
* :mod:`.cdb` -- CDB lists from their ``key:value`` text form and the list lookups.
* :mod:`.alerts` -- the alerts.json record and :class:`~.alerts.AlertWriter`.
* :mod:`.engine` -- :class:`~.engine.Engine` (``process(event) -> alert | None``).
* :mod:`.settings` / :mod:`.loader` -- ``<ruleset>`` settings, ``load_engine(home, settings)``,
  ``install_default_ruleset(home)``.
* :mod:`.holder` -- :class:`~.holder.EngineSlot`, the running engine swapped on reload.
* :mod:`.ruleset_install` -- install a Wazuh ruleset into HOME/ruleset (validated, swapped
  atomically), for the ``wazuh-cluster-ruleset`` console script.
* :mod:`.logtest` -- the ``wazuh-logtest`` console script.
"""
