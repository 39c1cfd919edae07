#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing (scripts/install-deps.sh), checks formatting and lints, then runs
# every test. Each test starts its own throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Timeouts and parallelism: .config/nextest.toml.
cargo nextest run --workspace --locked "$@"

# The Citus pass: a representative part of the suite again (isolation,
# idempotent retries, rollups and their aggregations, percentiles, top
# items, the caches' invalidation, the vectorizer's queue, full-text
# search), each test's server on a new Citus cluster of a coordinator and
# two workers, the schema distributed (tests/common: TestDb::for_server).
# The tests of Citus itself (tests/citus*.rs) ran above.
if compgen -G "/usr/lib/postgresql/*/lib/citus.so" >/dev/null; then
    echo "The Citus pass"
    AFFINITY_TESTS_ON_CITUS=1 cargo nextest run --workspace --locked -E '
        binary(tenant_isolation) | binary(membership_cache)
        | (binary(metrics_cache) & not test(over_a_thousand_entities))
        | (binary(api_metrics) & (test(retried) | test(retries) | test(another_organization)
                                  | test(monthly_partition) | test(agree) | test(by_hour_day)))
        | (binary(metrics_rollups) & (test(equal_aggregations) | test(archived_and_truncated)))
        | binary(metrics_fill_gaps) | binary(metrics_percentiles) | binary(metrics_top)
        | (binary(text_embedding) & (test(found_by_a_query) | test(reindexing)))
        | binary(search_text)' "$@"
else
    echo "Citus is not installed (and ../shared/vendor has no tarball to build it from): the Citus pass is skipped"
fi
