// A backend-for-frontend over affinity's gRPC API: what a post page needs.
//
// The proto is loaded at run time from the repository's proto/ (never
// copied). Every call carries `authorization: Bearer <token>` and a deadline.
// Usable as a module (postPage, connect) or through cli.js.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROTO_ROOT = path.resolve(here, '..', '..', 'proto');
const PROTO_FILE = 'affinity/v1/affinity.proto';

// Roles and granularities as the proto names them (enums: String).
export const ROLES = ['ROLE_VIEWER', 'ROLE_EDITOR', 'ROLE_ADMIN', 'ROLE_OWNER'];
export const GRANULARITIES = ['GRANULARITY_HOUR', 'GRANULARITY_DAY', 'GRANULARITY_WEEK', 'GRANULARITY_MONTH'];

function loadPackage() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT], // google/protobuf/* come with proto-loader
    keepCase: true, // field names exactly as in the proto
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).affinity.v1;
}

/** Clients of the three services a post page uses, on one channel. */
export function connect(address, token, { deadlineMs = 10_000 } = {}) {
  if (!address) throw new Error('no server address (AFFINITY_ADDR or --addr)');
  if (!token) throw new Error('no token (AFFINITY_TOKEN or --token)');
  const pkg = loadPackage();
  const creds = grpc.credentials.createInsecure();
  const orgs = new pkg.OrganizationService(address, creds);
  // The other clients share the first one's channel.
  const channelOverride = orgs.getChannel();
  const similarity = new pkg.SimilarityService(address, creds, { channelOverride });
  const metrics = new pkg.MetricsService(address, creds, { channelOverride });

  const metadata = () => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    return md;
  };
  // Promise-returning unary call; errors keep their gRPC status code.
  const call = (client, method, request) =>
    new Promise((resolve, reject) => {
      client[method](request, metadata(), { deadline: Date.now() + deadlineMs }, (err, response) => {
        if (err) {
          const e = new Error(`${method}: ${grpc.status[err.code] ?? err.code}: ${err.details}`);
          e.code = err.code;
          reject(e);
        } else {
          resolve(response);
        }
      });
    });

  return {
    userHasOrgPermission: (req) => call(orgs, 'UserHasOrgPermission', req),
    findSimilarContent: (req) => call(similarity, 'FindSimilarContent', req),
    search: (req) => call(similarity, 'Search', req),
    getMetricsAggregated: (req) => call(metrics, 'GetMetricsAggregated', req),
    close: () => orgs.close(),
  };
}

const toTimestamp = (date) => ({ seconds: String(Math.floor(date.getTime() / 1000)), nanos: 0 });
const fromTimestamp = (ts) => new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));

/** Bars of `width` characters at most, one line per bucket. */
export function asciiChart(points, { width = 40, value = 'sum' } = {}) {
  const max = Math.max(0, ...points.map((p) => p[value]));
  const label = (p) => p.bucket_start.slice(0, 16).replace('T', ' ');
  return points.map((p) => {
    const n = max > 0 ? Math.round((p[value] / max) * width) : 0;
    return `${label(p)} | ${'#'.repeat(Math.max(n, 0)).padEnd(width)} ${p[value]}`;
  });
}

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** A snippet's marked words (between U+0002 and U+0003) as <mark>, the rest escaped. */
export function snippetHtml(snippet) {
  return escapeHtml(snippet).replace(/\u0002/g, '<mark>').replace(/\u0003/g, '</mark>');
}

/**
 * A search box's results for the signed-in user (whose token the API
 * carries): full-text search (TEXT: every word typed must match; "quoted
 * phrases", `or`, `-word`) over the organization's posts, with the matched
 * passage of each, ready for the page.
 */
export async function searchBox(api, { organizationId, query, limit = 10 }) {
  const response = await api.search({
    organization_id: organizationId,
    query_text: query,
    mode: 'SEARCH_MODE_TEXT',
    entity_types: ['post'],
    max_results: limit,
    with_snippets: true,
  });
  return {
    query,
    results: response.hits.map((h) => ({
      entity_type: h.entity.entity_type,
      entity_id: h.entity.entity_id,
      score: h.score,
      snippet_html: snippetHtml(h.snippet),
    })),
  };
}

/**
 * What a post page shows to `userId`: nothing unless they hold
 * `requiredRole` in the organization; then the posts most similar to
 * `postId` and the series of one of its metrics.
 */
export async function postPage(api, opts) {
  const {
    organizationId,
    userId,
    postId,
    requiredRole = 'ROLE_VIEWER',
    relatedLimit = 5,
    similarityThreshold = 0.5,
    metric = 'likes',
    granularity = 'GRANULARITY_DAY',
    timeZone = 'UTC',
    days = 7,
    now = new Date(),
  } = opts;
  if (!ROLES.includes(requiredRole)) throw new Error(`unknown role ${requiredRole}; one of ${ROLES.join(', ')}`);
  if (!GRANULARITIES.includes(granularity)) {
    throw new Error(`unknown granularity ${granularity}; one of ${GRANULARITIES.join(', ')}`);
  }

  const perm = await api.userHasOrgPermission({
    user_id: userId,
    organization_id: organizationId,
    required_role: requiredRole,
  });
  const permission = {
    user_id: userId,
    organization_id: organizationId,
    required_role: requiredRole,
    allowed: perm.allowed,
    role: perm.role,
  };
  if (!perm.allowed) {
    return { permission, related_posts: null, series: null, chart: null };
  }

  const start = new Date(now.getTime() - days * 86_400_000);
  const [similar, aggregated] = await Promise.all([
    api
      .findSimilarContent({
        organization_id: organizationId,
        entity: { entity_type: 'post', entity_id: postId },
        similarity_threshold: similarityThreshold,
        max_results: relatedLimit,
        target_entity_types: ['post'],
      })
      // A post not embedded yet has no related posts (rather than no page).
      .catch((err) => {
        if (err.code === grpc.status.NOT_FOUND) return { items: [] };
        throw err;
      }),
    api.getMetricsAggregated({
      organization_id: organizationId,
      entity: { entity_type: 'post', entity_id: postId },
      metric_name: metric,
      granularity,
      start: toTimestamp(start),
      end: toTimestamp(now),
      time_zone: timeZone,
    }),
  ]);

  const relatedPosts = similar.items.map((i) => ({
    entity_id: i.entity.entity_id,
    similarity: i.similarity,
  }));
  const points = aggregated.buckets.map((b) => ({
    bucket_start: fromTimestamp(b.bucket_start).toISOString(),
    sum: b.sum,
    avg: b.avg,
    min: b.min,
    max: b.max,
    count: Number(b.count),
    last: b.last,
  }));
  return {
    permission,
    related_posts: relatedPosts,
    series: {
      entity_id: postId,
      metric,
      granularity,
      time_zone: timeZone,
      start: start.toISOString(),
      end: now.toISOString(),
      points,
      total: points.reduce((acc, p) => acc + p.sum, 0),
    },
    chart: asciiChart(points),
  };
}
