"""The AMP command of node questions: the master's API asks a worker about itself.

``AskNode`` (master → worker) carries a question name (``info``, ``status``,
``configuration``, ``logs``...) and its JSON arguments; the worker answers with
``{"answer": {...}}`` or ``{"problem": {...}}`` (a refusal with Wazuh's code), cut to fit
one AMP value.
"""

from __future__ import annotations

from twisted.protocols import amp

from wazuhcluster.wire.arguments import Json

#: How long the master waits for a worker's answer.
ASK_TIMEOUT = 15.0


class AskNode(amp.Command):
    """Master → worker: answer ``question`` about yourself."""

    arguments = [(b"question", amp.Unicode()), (b"arguments", Json())]
    response = [(b"reply", Json())]
