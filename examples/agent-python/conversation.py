"""An agent's conversation kept in affinity, printed as one JSON object.

The agent logs the turns of one session (each turn's parent is the turn
before it), retrieves context for its next prompt by the user's words
(SearchAiContext with query_text, within the session), records feedback
on two answers (one helpful, one not; a retry of the same feedback_id is
stored once), retrieves again without the answer marked unhelpful, logs
its next turn, pages through the session oldest first (ListAiContext) and
exports it with its feedback (the ExportAiContext server stream).

    AFFINITY_ADDR=127.0.0.1:50051 AFFINITY_TOKEN=... AFFINITY_ORG_ID=... \
        .venv/bin/python conversation.py

Settings: AFFINITY_ADDR (default 127.0.0.1:50051), AFFINITY_TOKEN (a user
token logs and gives feedback as its user; a service_role token needs
AFFINITY_USER_ID), AFFINITY_ORG_ID, AFFINITY_SESSION_ID (default: a new
UUID; the idempotency keys and feedback ids derive from it, so a rerun
stores nothing new), AFFINITY_WAIT_S (seconds to wait for the turns to be
embedded, default 60). The service needs its text model (scripts/run.sh
starts one).
"""

import json
import os
import sys
import time
import uuid

import grpc

# The agent example's generated code.
from agent import DEADLINE_S, affinity_pb2, affinity_pb2_grpc

SOURCE_TYPE = "agent"
# The session so far: what the user asked, what the agent answered. The
# second answer is wrong (those hashtags are a bakery's); the user says so.
TURNS = [
    (
        "User asked which hashtags to use for the latte art reel",
        "Suggested #sourdough and #breadmaking",
    ),
    (
        "User asked again for latte art hashtags, for coffee this time",
        "Suggested #latteart, #baristalife and #coffeeart",
    ),
    (
        "User asked when to publish the latte art reel",
        "Suggested Saturday at 10:00, when the café's followers are most active",
    ),
]
NEXT_PROMPT = "hashtags for the latte art reel"
NEXT_TURN = (
    "User asked for hashtags for a second latte art reel",
    "Reused #latteart, #baristalife and #coffeeart from earlier in the session",
)
# (turn, feedback value): the first answer did not help, the second did.
FEEDBACK = [(0, -1.0), (1, 1.0)]


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"conversation: {name} is required")
    return value


class Agent:
    def __init__(self, channel: grpc.Channel, org: str, user: str, session: str):
        self.stub = affinity_pb2_grpc.AiContextServiceStub(channel)
        self.auth = (("authorization", f"Bearer {setting('AFFINITY_TOKEN')}"),)
        self.org, self.user, self.session = org, user, session

    def call(self, method: str, request):
        return getattr(self.stub, method)(request, metadata=self.auth, timeout=DEADLINE_S)

    def log(self, step: int, turn: tuple[str, str], parent: str) -> dict:
        r = self.call(
            "LogAiContext",
            affinity_pb2.LogAiContextRequest(
                organization_id=self.org,
                user_id=self.user,
                source_type=SOURCE_TYPE,
                context_summary=turn[0],
                ai_response=turn[1],
                idempotency_key=f"{self.session}:{step}",
                session_id=self.session,
                parent_id=parent,
            ),
        )
        return {"id": r.id, "parent_id": parent, "duplicate": r.duplicate}

    def context(self, query: str, without_unhelpful: bool) -> list[dict]:
        """The session's entries for the next prompt, best first."""
        r = self.call(
            "SearchAiContext",
            affinity_pb2.SearchAiContextRequest(
                organization_id=self.org,
                query_text=query,
                similarity_threshold=-1.0,
                max_results=10,
                session_id=self.session,
                exclude_negative_feedback=without_unhelpful,
            ),
        )
        return [{"id": e.id, "ai_response": e.ai_response, "similarity": e.similarity} for e in r.entries]

    def wait_until_searchable(self, ids: list[str], wait_s: float) -> float:
        started = time.monotonic()
        while True:
            found = {e["id"] for e in self.context(TURNS[0][0], False)}
            if found.issuperset(ids):
                return time.monotonic() - started
            if time.monotonic() - started > wait_s:
                raise TimeoutError(
                    f"{len(found & set(ids))} of {len(ids)} turns searchable after {wait_s:.0f} s: "
                    "is the service's text model running?"
                )
            time.sleep(0.25)

    def feedback(self, entry_id: str, step: int, value: float) -> bool:
        # One id per (session, turn): a retry of this call is stored once.
        feedback_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.session}:feedback:{step}"))
        r = self.call(
            "RecordAiFeedback",
            affinity_pb2.RecordAiFeedbackRequest(
                organization_id=self.org,
                entry_id=entry_id,
                feedback=affinity_pb2.AiFeedback(
                    feedback_id=feedback_id,
                    name="helpful",
                    value=value,
                    comment="wrong hashtags" if value < 0 else "",
                    user_id=self.user,
                ),
            ),
        )
        return r.duplicate

    def listed(self, page_size: int) -> list[list[str]]:
        """The session oldest first, page by page."""
        pages, token = [], ""
        while True:
            r = self.call(
                "ListAiContext",
                affinity_pb2.ListAiContextRequest(
                    organization_id=self.org, session_id=self.session, page_size=page_size, page_token=token
                ),
            )
            pages.append([e.id for e in r.entries])
            token = r.next_page_token
            if not token:
                return pages

    def export(self) -> list[dict]:
        request = affinity_pb2.ExportAiContextRequest(organization_id=self.org, session_id=self.session)
        return [
            {
                "id": e.id,
                "parent_id": e.parent_id,
                "session_id": e.session_id,
                "context_summary": e.context_summary,
                "feedback": [{"name": f.name, "value": f.value, "user_id": f.user_id} for f in e.feedback],
            }
            for e in self.call("ExportAiContext", request)
        ]


def converse(a: Agent, wait_s: float) -> dict:
    logged, parent = [], ""
    for step, turn in enumerate(TURNS):
        logged.append(a.log(step, turn, parent))
        parent = logged[-1]["id"]
    ids = [t["id"] for t in logged]
    waited = a.wait_until_searchable(ids, wait_s)
    before = a.context(NEXT_PROMPT, without_unhelpful=False)
    feedback = []
    for step, value in FEEDBACK:
        duplicate = a.feedback(ids[step], step, value)
        feedback.append({"entry_id": ids[step], "value": value, "duplicate": duplicate})
    retried = a.feedback(ids[FEEDBACK[0][0]], FEEDBACK[0][0], FEEDBACK[0][1])
    after = a.context(NEXT_PROMPT, without_unhelpful=True)
    logged.append(a.log(len(TURNS), NEXT_TURN, parent))
    return {
        "session_id": a.session,
        "logged": logged,
        "searchable_after_s": round(waited, 2),
        "context_before": before,
        "feedback": feedback,
        "feedback_retry_duplicate": retried,
        "context_after": after,
        "pages": a.listed(page_size=2),
        "exported": a.export(),
    }


def main() -> int:
    addr = setting("AFFINITY_ADDR", "127.0.0.1:50051")
    org = setting("AFFINITY_ORG_ID")
    session = os.environ.get("AFFINITY_SESSION_ID") or str(uuid.uuid4())
    wait_s = float(os.environ.get("AFFINITY_WAIT_S", "60"))
    with grpc.insecure_channel(addr) as channel:
        agent = Agent(channel, org, os.environ.get("AFFINITY_USER_ID", ""), session)
        try:
            out = converse(agent, wait_s)
        except grpc.RpcError as e:
            # The status only: never the request's metadata (the token).
            print(f"conversation: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        except TimeoutError as e:
            print(f"conversation: {e}", file=sys.stderr)
            return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
