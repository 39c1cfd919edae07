"""A guided tour of affinity, step by step, as one user: the README's tour.

It creates an organization, checks a permission, upserts embeddings of three
posts, finds the content similar to one of them, records a week of hourly
likes and aggregates them by day in a time zone, logs AI context and
retrieves it by vector. Each step prints what it sent and what came back;
the last line is a JSON summary (the suite's test reads it).

    A=target/release/affinity
    export AFFINITY_USER_ID=$(cat /proc/sys/kernel/random/uuid)
    export AFFINITY_TOKEN=$($A token --user "$AFFINITY_USER_ID")
    examples/agent-python/.venv/bin/python examples/agent-python/tour.py

Settings: AFFINITY_ADDR (default 127.0.0.1:50051), AFFINITY_TOKEN (an
`authenticated` token), AFFINITY_USER_ID (its `sub`).
"""

import datetime as dt
import json
import os
import sys
import uuid

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

# The agent example's generated code and toy embedding (hashed bag of words).
from agent import DEADLINE_S, MODEL, affinity_pb2, affinity_pb2_grpc, embed

POSTS = {
    "espresso": "Morning espresso with latte art at our new coffee bar",
    "latte": "Latte art class this weekend at the coffee bar",
    "hiking": "Sunrise hike to the mountain lake, tents and all",
}


def step(title: str, detail: str) -> None:
    print(f"\n== {title}\n{detail}", flush=True)


def ts(t: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out


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

    ids = {name: str(uuid.uuid4()) for name in POSTS}
    upserted = sim.UpsertEmbeddings(
        affinity_pb2.UpsertEmbeddingsRequest(
            organization_id=org.id,
            embeddings=[
                affinity_pb2.EmbeddingRecord(
                    entity=affinity_pb2.EntityRef(entity_type="post", entity_id=ids[name]),
                    vector=embed(text),
                    model=MODEL,
                )
                for name, text in POSTS.items()
            ],
        ),
        **call,
    ).upserted
    step("3. UpsertEmbeddings", f"{upserted} posts, {len(embed(''))}-dimension vectors of {MODEL}")

    similar = sim.FindSimilarContent(
        affinity_pb2.FindSimilarContentRequest(
            organization_id=org.id,
            entity=affinity_pb2.EntityRef(entity_type="post", entity_id=ids["espresso"]),
            similarity_threshold=-1.0,  # everything, most similar first
            max_results=5,
        ),
        **call,
    ).items
    names = {v: k for k, v in ids.items()}
    ranked = [(names[i.entity.entity_id], round(i.similarity, 3)) for i in similar]
    step("4. FindSimilarContent (like the espresso post)", "\n".join(f"  {n}: {s}" for n, s in ranked))
    summary["similar"] = [n for n, _ in ranked]

    # A week of hourly like counts of the espresso post: 1, 2, 3, ... per hour.
    end = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=7)
    entity = affinity_pb2.EntityRef(entity_type="post", entity_id=ids["espresso"])
    points = [
        affinity_pb2.MetricPoint(
            entity=entity, metric_name="likes", value=float(h + 1), recorded_at=ts(start + dt.timedelta(hours=h))
        )
        for h in range(7 * 24)
    ]
    recorded = metrics.RecordMetrics(
        affinity_pb2.RecordMetricsRequest(organization_id=org.id, points=points), **call
    ).recorded
    step("5. RecordMetrics", f"{recorded} hourly points of likes over the last 7 days")

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
    step("6. GetMetricsAggregated (days in Europe/Berlin)", "\n".join(lines))
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
                embedding=embed(summary_text),
                embedding_model=MODEL,
                idempotency_key=f"{slug}-{i}",
            ),
            **call,
        )
        logged.append(r.id)
    step("7. LogAiContext", f"{len(logged)} entries: {', '.join(logged)}")

    query = "when to post the latte class"
    found = ai.SearchAiContext(
        affinity_pb2.SearchAiContextRequest(
            organization_id=org.id, vector=embed(query), model=MODEL, max_results=2
        ),
        **call,
    ).entries
    step(
        f"8. SearchAiContext ({query!r})",
        "\n".join(f"  {e.similarity:.3f}  {e.context_summary} -> {e.ai_response}" for e in found),
    )
    summary["context_found"] = [e.context_summary for e in found]

    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
