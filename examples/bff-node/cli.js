#!/usr/bin/env node
// Runs the BFF's post page once and prints it as one JSON object on stdout
// (the ASCII chart also goes to stderr, for people).
//
//   AFFINITY_ADDR=127.0.0.1:50051 AFFINITY_TOKEN=... \
//   AFFINITY_ORG_ID=... AFFINITY_USER_ID=... AFFINITY_POST_ID=... node cli.js
//
// With AFFINITY_SEARCH (--search) set, it runs the search box instead: the
// signed-in user's (the token's) full-text search over the organization's
// posts, with snippets (needs AFFINITY_TOKEN and AFFINITY_ORG_ID only).
//
// Each setting is an environment variable or a flag (--addr, --org, ...);
// a flag wins. Prefer AFFINITY_TOKEN to --token: flags show up in `ps`.
import { parseArgs } from 'node:util';

import { connect, postPage, searchBox } from './bff.js';

const settings = {
  addr: ['AFFINITY_ADDR', '127.0.0.1:50051'],
  token: ['AFFINITY_TOKEN'],
  org: ['AFFINITY_ORG_ID'],
  user: ['AFFINITY_USER_ID'],
  post: ['AFFINITY_POST_ID'],
  role: ['AFFINITY_REQUIRED_ROLE', 'ROLE_VIEWER'],
  limit: ['AFFINITY_RELATED_LIMIT', '5'],
  threshold: ['AFFINITY_SIMILARITY_THRESHOLD', '0.5'],
  metric: ['AFFINITY_METRIC', 'likes'],
  granularity: ['AFFINITY_GRANULARITY', 'GRANULARITY_DAY'],
  'time-zone': ['AFFINITY_TIME_ZONE', 'UTC'],
  days: ['AFFINITY_DAYS', '7'],
  search: ['AFFINITY_SEARCH'],
};

function config() {
  const { values } = parseArgs({
    options: Object.fromEntries(Object.keys(settings).map((k) => [k, { type: 'string' }])),
  });
  const out = {};
  for (const [key, [env, fallback]] of Object.entries(settings)) {
    out[key] = values[key] ?? process.env[env] ?? fallback;
  }
  const required = out.search ? ['token', 'org'] : ['token', 'org', 'user', 'post'];
  const missing = required.filter((k) => !out[k]);
  if (missing.length > 0) {
    const names = missing.map((k) => `${settings[k][0]} (--${k})`).join(', ');
    throw new Error(`missing: ${names}`);
  }
  return out;
}

async function main() {
  const c = config();
  const api = connect(c.addr, c.token);
  try {
    if (c.search) {
      const results = await searchBox(api, { organizationId: c.org, query: c.search, limit: Number(c.limit) });
      process.stdout.write(`${JSON.stringify(results)}\n`);
      return;
    }
    const page = await postPage(api, {
      organizationId: c.org,
      userId: c.user,
      postId: c.post,
      requiredRole: c.role,
      relatedLimit: Number(c.limit),
      similarityThreshold: Number(c.threshold),
      metric: c.metric,
      granularity: c.granularity,
      timeZone: c['time-zone'],
      days: Number(c.days),
    });
    if (page.chart) process.stderr.write(`${page.chart.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify(page)}\n`);
  } finally {
    api.close();
  }
}

main().catch((err) => {
  process.stderr.write(`bff: ${err.message}\n`);
  process.exitCode = 1;
});
