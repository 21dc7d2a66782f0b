"""PUT /logtest and its sessions, and GET /groups/{group_id}/configuration."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.test_api_fixtures import ApiHarness, make_user
from wazuhcluster.analysis.loader import install_default_ruleset
from wazuhcluster.api.logtest_endpoints import MAX_SESSIONS, SESSION_TIMEOUT

FAILED = "Jan  2 10:00:00 host sshd[1]: Failed password for root from 10.0.0.9 port 22 ssh2"


def body(event: str = FAILED, token: str | None = None) -> dict[str, str]:
    """A logtest request."""
    found = {"event": event, "log_format": "syslog", "location": "/var/log/auth.log"}
    if token is not None:
        found["token"] = token
    return found


class LogtestTests(SynchronousTestCase):
    """Sessions with their own correlation state, bounded in number and idle time."""

    def setUp(self) -> None:
        self.api = ApiHarness(self)
        install_default_ruleset(str(self.api.home.root))

    def test_event_analysed_in_a_new_session(self) -> None:
        """The first call opens a session and answers the alert record."""
        answer = self.api.call("PUT", "/logtest", body()).json
        data = answer["data"]
        self.assertEqual(answer["error"], 0)
        self.assertRegex(data["token"], r"^[0-9a-f]{8}$")
        self.assertIn(f"Session initialized with token '{data['token']}'", data["messages"][0])
        self.assertEqual(data["output"]["rule"]["id"], "5716")
        self.assertTrue(data["alert"])
        self.assertEqual(data["output"]["decoder"]["name"], "sshd")

    def test_sessions_keep_their_correlation_state(self) -> None:
        """firedtimes grows within a session and starts again in another one."""
        first = self.api.call("PUT", "/logtest", body()).json["data"]
        token = first["token"]
        again = self.api.call("PUT", "/logtest", body(token=token)).json["data"]
        self.assertEqual((again["token"], again["messages"]), (token, []))
        self.assertEqual(again["output"]["rule"]["firedtimes"], 2)
        other = self.api.call("PUT", "/logtest", body()).json["data"]
        self.assertEqual(other["output"]["rule"]["firedtimes"], 1)
        closed = self.api.call("DELETE", f"/logtest/sessions/{token}").json
        self.assertIn("closed successfully", closed["data"]["messages"][0])
        gone = self.api.call("DELETE", f"/logtest/sessions/{token}")
        self.assertEqual((gone.status, gone.json["error"]), (400, 7001))
        renewed = self.api.call("PUT", "/logtest", body(token=token)).json["data"]
        self.assertNotEqual(renewed["token"], token)
        self.assertIn("token expires", renewed["messages"][0])

    def test_sessions_are_bounded_and_expire(self) -> None:
        """The oldest session goes beyond the bound; an idle one expires."""
        tokens = [
            self.api.call("PUT", "/logtest", body()).json["data"]["token"]
            for _ in range(MAX_SESSIONS + 1)
        ]
        sessions = self.api.resource.endpoints.logtest.sessions
        self.assertEqual(len(sessions), MAX_SESSIONS)
        self.assertNotIn(tokens[0], sessions)
        self.api.clock.advance(SESSION_TIMEOUT + 1)
        self.api._token = None  # the token expired too
        self.assertEqual(self.api.call("PUT", "/logtest", body()).status, 200)
        self.assertEqual(len(sessions), 1)

    def test_refusals(self) -> None:
        """A body without its fields is 400; readonly may not run logtest."""
        missing = self.api.call("PUT", "/logtest", {"event": "x"})
        self.assertEqual(missing.status, 400)
        token = make_user(self.api, "reader", "readonly")
        refused = self.api.call("PUT", "/logtest", body(), token=token)
        self.assertEqual((refused.status, refused.json["error"]), (403, 4000))


class GroupConfigurationTests(SynchronousTestCase):
    """GET /groups/{group_id}/configuration."""

    def test_blocks_with_filters_and_config(self) -> None:
        """Each <agent_config> block is an item; a missing group is 404 (1710)."""
        api = ApiHarness(self)
        api.store.create_group("web")
        conf = (
            b'<agent_config os="Linux"><localfile><location>/var/log/a</location>'
            b"<log_format>syslog</log_format></localfile></agent_config>"
            b"<agent_config><labels><label key='x'>y</label></labels></agent_config>"
        )
        put = api.call(
            "PUT", "/groups/web/configuration", conf, headers={"content-type": "application/xml"}
        )
        self.assertEqual(put.status, 200, put.raw)
        data = api.call("GET", "/groups/web/configuration").json["data"]
        self.assertEqual(data["total_affected_items"], 2)
        first = data["affected_items"][0]
        self.assertEqual(first["filters"], {"os": "Linux"})
        self.assertEqual(first["config"]["localfile"]["location"], "/var/log/a")
        second = api.call("GET", "/groups/web/configuration?offset=1").json["data"]
        self.assertEqual(
            second["affected_items"][0]["config"]["labels"]["label"], {"key": "x", "item": "y"}
        )
        missing = api.call("GET", "/groups/ghost/configuration")
        self.assertEqual((missing.status, missing.json["error"]), (404, 1710))
