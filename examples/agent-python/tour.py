"""A guided tour of affinity, step by step, as one user: the README's tour.

It creates an organization, checks a permission, indexes three notes,
writes a post the way the application does (plain SQL, through psql), waits
for the service's text model to embed it, finds the notes similar to it,
records a week of hourly likes and aggregates them by day in a time zone,
logs AI context (text only) and retrieves it by a question. Each step
prints what it sent and what came back; the last line is a JSON summary
(the suite's test reads it).

    A=target/release/affinity
    export AFFINITY_USER_ID=$(cat /proc/sys/kernel/random/uuid)
    export AFFINITY_TOKEN=$($A token --user "$AFFINITY_USER_ID")
    examples/agent-python/.venv/bin/python examples/agent-python/tour.py

Settings: AFFINITY_ADDR (default 127.0.0.1:50051), AFFINITY_TOKEN (an
`authenticated` token), AFFINITY_USER_ID (its `sub`), AFFINITY_TOUR_DATABASE
(a libpq connection string of the service's database for psql; default: the
embedded default's socket in $AFFINITY_DATA_DIR, else
$XDG_DATA_HOME/affinity, else ~/.local/share/affinity), AFFINITY_WAIT_S
(seconds to wait for vectors, default 120).
"""

import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

# The agent example's generated code.
from agent import DEADLINE_S, affinity_pb2, affinity_pb2_grpc

NOTES = {
    "latte": "Our baristas teach latte art: pouring hearts and rosettes in milk foam",
    "hiking": "Trail guide: a sunrise hike to the mountain lake, with tents and a campfire",
    "hours": "Opening hours: Monday to Friday from 7 am, weekends from 9 am",
}
POST = {
    "caption": "Latte art workshop this Saturday",
    "content": "Learn to pour a heart into your cappuccino at the coffee bar",
    "hashtags": ["latteart", "coffee"],
}
# The application's write of a post: two rows, one transaction. The service
# is not called; its triggers queue the text for embedding.
POST_SQL = """
BEGIN;
INSERT INTO posts_core (id, organization_id, user_id) VALUES (:'id', :'org', :'user');
INSERT INTO posts_content (organization_id, post_id, caption, content, hashtags)
VALUES (:'org', :'id', :'caption', :'content', string_to_array(:'hashtags', ','));
COMMIT;
"""


def step(title: str, detail: str) -> None:
    print(f"\n== {title}\n{detail}", flush=True)


def ts(t: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out


def database() -> str:
    given = os.environ.get("AFFINITY_TOUR_DATABASE")
    if given:
        return given
    data = os.environ.get("AFFINITY_DATA_DIR")
    if not data:
        home = os.environ.get("XDG_DATA_HOME") or str(pathlib.Path.home() / ".local/share")
        data = os.path.join(home, "affinity")
    return f"host={os.path.join(data, 'postgres')} user=postgres dbname=affinity"


def write_post(org: str, user: str) -> str:
    """Inserts a post as the application does; its id."""
    post_id = str(uuid.uuid4())
    values = {"id": post_id, "org": org, "user": user, **POST, "hashtags": ",".join(POST["hashtags"])}
    args = ["psql", database(), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]
    for name, value in values.items():
        args += ["-v", f"{name}={value}"]
    subprocess.run(args, input=POST_SQL, text=True, check=True, stdout=subprocess.DEVNULL)
    return post_id


def poll(what: str, look, wait_s: float):
    """look() until it returns something, or give up after wait_s."""
    started = time.monotonic()
    while True:
        found = look()
        if found:
            return found, time.monotonic() - started
        if time.monotonic() - started > wait_s:
            sys.exit(f"tour: {what} after {wait_s:.0f} s: is the service's text model running?")
        time.sleep(0.25)


def main() -> int:
    addr = os.environ.get("AFFINITY_ADDR", "127.0.0.1:50051")
    token = os.environ.get("AFFINITY_TOKEN")
    user = os.environ.get("AFFINITY_USER_ID")
    if not token or not user:
        sys.exit("tour: set AFFINITY_TOKEN and AFFINITY_USER_ID (see the docstring)")
    auth = [("authorization", f"Bearer {token}")]
    channel = grpc.insecure_channel(addr)
    orgs = affinity_pb2_grpc.OrganizationServiceStub(channel)
    sim = affinity_pb2_grpc.SimilarityServiceStub(channel)
    metrics = affinity_pb2_grpc.MetricsServiceStub(channel)
    ai = affinity_pb2_grpc.AiContextServiceStub(channel)
    call = {"metadata": auth, "timeout": DEADLINE_S}
    summary = {}

    slug = f"tour-{uuid.uuid4().hex[:8]}"
    org = orgs.CreateOrganization(
        affinity_pb2.CreateOrganizationRequest(name="Tour Coffee", slug=slug, owner_user_id=user),
        **call,
    )
    step("1. CreateOrganization", f"slug {org.slug} -> id {org.id}; you are its owner")
    summary["organization_id"] = org.id

    perm = orgs.UserHasOrgPermission(
        affinity_pb2.UserHasOrgPermissionRequest(
            user_id=user, organization_id=org.id, required_role=affinity_pb2.ROLE_EDITOR
        ),
        **call,
    )
    role = affinity_pb2.Role.Name(perm.role)
    step("2. UserHasOrgPermission (editor?)", f"allowed={perm.allowed}, your role {role}")
    summary["allowed"], summary["role"] = perm.allowed, role

    wait_s = float(os.environ.get("AFFINITY_WAIT_S", "120"))
    ids = {name: str(uuid.uuid4()) for name in NOTES}
    indexed = sim.IndexTexts(
        affinity_pb2.IndexTextsRequest(
            organization_id=org.id,
            texts=[
                affinity_pb2.TextRecord(
                    entity=affinity_pb2.EntityRef(entity_type="note", entity_id=ids[name]), text=text
                )
                for name, text in NOTES.items()
            ],
        ),
        **call,
    )
    step("3. IndexTexts", f"{indexed.indexed} notes, {indexed.queued_for_embedding} queued for embedding")

    post_id = write_post(org.id, user)
    step("4. A post, written in SQL (psql)", f"{POST['caption']!r} -> post {post_id}")

    def similar_notes():
        try:
            items = sim.FindSimilarContent(
                affinity_pb2.FindSimilarContentRequest(
                    organization_id=org.id,
                    entity=affinity_pb2.EntityRef(entity_type="post", entity_id=post_id),
                    similarity_threshold=-1.0,  # everything, most similar first
                    max_results=5,
                    target_entity_types=["note"],
                ),
                **call,
            ).items
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:  # the post has no vector yet
                return None
            raise
        return items if len(items) == len(NOTES) else None

    similar, waited = poll("the post and the notes are not embedded", similar_notes, wait_s)
    step("5. Wait for the vectors", f"embedded by the service's text model after {waited:.1f} s")
    names = {v: k for k, v in ids.items()}
    ranked = [(names[i.entity.entity_id], round(i.similarity, 3)) for i in similar]
    step("6. FindSimilarContent (notes like the post)", "\n".join(f"  {n}: {s}" for n, s in ranked))
    summary["similar"] = [n for n, _ in ranked]
    summary["post_id"] = post_id

    # A week of hourly like counts of the espresso post: 1, 2, 3, ... per hour.
    end = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=7)
    entity = affinity_pb2.EntityRef(entity_type="post", entity_id=post_id)
    points = [
        affinity_pb2.MetricPoint(
            entity=entity, metric_name="likes", value=float(h + 1), recorded_at=ts(start + dt.timedelta(hours=h))
        )
        for h in range(7 * 24)
    ]
    recorded = metrics.RecordMetrics(
        affinity_pb2.RecordMetricsRequest(organization_id=org.id, points=points), **call
    ).recorded
    step("7. RecordMetrics", f"{recorded} hourly points of likes over the last 7 days")

    buckets = metrics.GetMetricsAggregated(
        affinity_pb2.GetMetricsAggregatedRequest(
            organization_id=org.id,
            entity=entity,
            metric_name="likes",
            granularity=affinity_pb2.GRANULARITY_DAY,
            start=ts(start),
            end=ts(end),
            time_zone="Europe/Berlin",
        ),
        **call,
    ).buckets
    lines = [
        f"  {b.bucket_start.ToDatetime().isoformat()}Z  count {b.count:>2}  sum {b.sum:>6.0f}  last {b.last:.0f}"
        for b in buckets
    ]
    step("8. GetMetricsAggregated (days in Europe/Berlin)", "\n".join(lines))
    summary["buckets"] = len(buckets)
    summary["points_aggregated"] = sum(b.count for b in buckets)
    summary["likes_sum"] = sum(b.sum for b in buckets)

    notes = [
        ("User asked when to post the latte art class", "Suggested Friday 18:00 local time"),
        ("User asked for hiking hashtags", "Suggested #sunrise #mountainlake"),
    ]
    logged = []
    for i, (summary_text, answer) in enumerate(notes):
        meta = struct_pb2.Struct()
        meta.update({"model": "tour", "step": i})
        r = ai.LogAiContext(
            affinity_pb2.LogAiContextRequest(
                organization_id=org.id,
                user_id=user,
                source_type="chat",
                context_summary=summary_text,
                ai_response=answer,
                metadata=meta,
                idempotency_key=f"{slug}-{i}",
            ),
            **call,
        )
        logged.append(r.id)
    step("9. LogAiContext (text only)", f"{len(logged)} entries: {', '.join(logged)}")

    query = "when should we announce the coffee workshop"

    def both_found():
        entries = ai.SearchAiContext(
            affinity_pb2.SearchAiContextRequest(
                organization_id=org.id, query_text=query, similarity_threshold=-1.0, max_results=2
            ),
            **call,
        ).entries
        return entries if len(entries) == len(notes) else None

    found, _ = poll("the AI context entries are not embedded", both_found, wait_s)
    step(
        f"10. SearchAiContext (query_text {query!r})",
        "\n".join(f"  {e.similarity:.3f}  {e.context_summary} -> {e.ai_response}" for e in found),
    )
    summary["context_found"] = [e.context_summary for e in found]

    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
