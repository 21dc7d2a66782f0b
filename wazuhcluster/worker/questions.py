"""The worker's side of node questions: it answers the master's ``AskNode`` about itself.

The answers are :class:`~wazuhcluster.node.answers.NodeAnswers`, the same the master gives
about itself; a refusal travels as a problem (Wazuh's code and message), and an answer is
cut to fit one AMP value.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp

from wazuhcluster.api.errors import ApiError
from wazuhcluster.node.answers import QUESTIONS, NodeAnswers, fit_answer, problem_of
from wazuhcluster.util.logs import ClusterLog
from wazuhcluster.wire.features import LinkFeature
from wazuhcluster.wire.questions import AskNode
from wazuhcluster.worker.link import MasterLink


class WorkerQuestions(LinkFeature[MasterLink]):
    """Answers the master's node questions (see module docstring)."""

    def __init__(self, answers: NodeAnswers, log: ClusterLog) -> None:
        self.answers = answers
        self.log = log

    def locator(self, link: MasterLink) -> amp.CommandLocator:
        """The responder of ``AskNode``."""
        return _QuestionLocator(self)

    async def reply(self, question: str, arguments: Any) -> dict[str, Any]:
        """The answer to one question, or its problem."""
        if question not in QUESTIONS or not isinstance(arguments, dict):
            return {"problem": {"status": 400, "title": "Bad Request", "detail": "bad question"}}
        try:
            answer = await self.answers.answer(question, arguments)
        except ApiError as error:
            return {"problem": problem_of(error)}
        except Exception as error:
            self.log.error(
                "Node question {question} failed: {error!r}", question=question, error=error
            )
            return {
                "problem": problem_of(
                    ApiError(500, "Wazuh Internal Error", repr(error)[:200], 1000)
                )
            }
        return {"answer": fit_answer(answer)}


class _QuestionLocator(amp.CommandLocator):
    """AskNode from the master."""

    def __init__(self, feature: WorkerQuestions) -> None:
        self.feature = feature

    @AskNode.responder
    async def ask_node(self, question: str, arguments: Any) -> dict[str, Any]:
        """Answer one question about this worker."""
        return {"reply": await self.feature.reply(question, arguments)}
