// The real `oidc-provider` package on loopback, configured for Latchkey's interop
// tier (tier 3 of docs/behaviour.md, "Test tiers") and for scripts/demo.
//
// Usage: node interop/provider.mjs [--access-token-ttl SECS] [--device-interval SECS]
//   (or INTEROP_ACCESS_TOKEN_TTL / INTEROP_DEVICE_INTERVAL in the environment)
//
// It binds 127.0.0.1 on an ephemeral port and prints exactly one JSON line on
// stdout once it serves: {"issuer": "http://127.0.0.1:PORT", "introspection_client":
// {...}, "confidential_clients": {"basic": {...}, "post": {...}}, "account": {...}}. Nothing else is ever written to stdout. stderr gets the
// package's own warnings and one JSON line per event of interest ({"event": ...}),
// never a token. GET /_interop/counters answers those counts as JSON (with the
// requests per path), so tests can prove how many refreshes the provider saw and
// that a request never arrived; POST /_interop/destroy-access-token
// deletes one access token and nothing else.
//
// What is configured, and why:
// - `latchkey-cli`: a public native client (token_endpoint_auth_method none, PKCE
//   S256 required, the package's default for public clients). Its one redirect URI
//   is http://127.0.0.1/callback: for native clients the package ignores the port of
//   loopback redirect URIs (RFC 8252 §7.3), so Latchkey's ephemeral-port listener
//   matches.
// - Refresh tokens: the package's stock rule (the refresh_token grant and the
//   offline_access scope, which it drops from authorization requests without
//   prompt=consent, OIDC Core §11; Latchkey sends prompt=consent when it asks for
//   offline_access, and the browser tests check a refresh token arrives); rotated on every use; a
//   spent refresh token presented again revokes the whole grant (the package's reuse
//   detection), so a double refresh by Latchkey would end the session.
// - `latchkey-basic` and `latchkey-post`: the same native client, but confidential
//   ("installed app" clients that come with a secret, as Google's desktop clients
//   do), authenticating with client_secret_basic and client_secret_post. The
//   package accepts only the registered method, so a login, refresh and revocation
//   that succeed prove Latchkey sent the secret the registered way. Their secrets
//   are made per run and printed in the ready line, for the tests' config and
//   leak check.
// - GET /_interop/authorization-requests answers the query parameters of every
//   request to the authorization endpoint (without state, nonce and the PKCE
//   challenge), so tests can see what reached the provider (auth_params).
// - Device flow, revocation, introspection and userinfo enabled. Introspection is
//   done by a confidential client of the tests (`interop-introspector`), which may
//   introspect any token.
// - Login and consent use the package's own development interaction pages. Any
//   login name is accepted by those pages, but only the one test account exists:
//   findAccount knows only it, so another name cannot finish a login.
// - The device authorization answer gets an `interval` (RFC 8628 §3.2) so tests
//   need not wait the 5 s default between polls.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

// stdout carries exactly one line, the ready line, for whoever started us; the
// package's own notices (console.log / console.info) go to stderr with its warnings.
const writeStdout = process.stdout.write.bind(process.stdout);
console.log = console.error;
console.info = console.error;

const { default: Provider } = await import('oidc-provider');

const { values: opts } = parseArgs({
  options: {
    'access-token-ttl': { type: 'string', default: process.env.INTEROP_ACCESS_TOKEN_TTL ?? '3600' },
    'device-interval': { type: 'string', default: process.env.INTEROP_DEVICE_INTERVAL ?? '1' },
  },
});

function positiveInt(name, text) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`provider.mjs: --${name} must be a positive integer, not ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

// Mutable: tests shorten it for a login, then lengthen it (POST /_interop/config).
let accessTokenTtl = positiveInt('access-token-ttl', opts['access-token-ttl']);
const deviceInterval = positiveInt('device-interval', opts['device-interval']);

const ACCOUNT = {
  sub: 'interop-user',
  email: 'interop@example.test',
  name: 'Interop User',
  groups: ['dev', 'interop'],
};
const PASSWORD = 'interop-password';

// The introspecting client's secret is made per run; it is a test credential for
// this throwaway provider, printed so the tests can use it.
const introspector = { client_id: 'interop-introspector', client_secret: randomBytes(24).toString('base64url') };

// Confidential native clients, one per client authentication method.
const confidential = {
  basic: { client_id: 'latchkey-basic', client_secret: randomBytes(24).toString('base64url') },
  post: { client_id: 'latchkey-post', client_secret: randomBytes(24).toString('base64url') },
};
const authorizationRequests = [];

const counters = {
  device_authorizations: 0,
  authorizations: 0,
  grants: {}, // grant_type -> successful token responses
  grant_errors: {}, // error code -> count
  grants_revoked: { reuse: 0, revocation: 0, other: 0 },
  refresh_tokens_consumed: 0,
  revocations: 0,
  introspections: 0,
  userinfo: 0,
  server_errors: 0,
  paths: {}, // request path -> count, for tests that prove a request never arrived
};

// Every token handed to a client, for the tests' leak check (the fake provider's
// `issued_tokens` of tier 2). Served on loopback at GET /_interop/issued, never logged.
const issued = [];

function event(name, fields = {}) {
  process.stderr.write(`${JSON.stringify({ event: name, ...fields })}\n`);
}

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'interop-rs256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'latchkey-cli',
      client_name: 'Latchkey',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    ...Object.entries(confidential).map(([method, c]) => ({
      ...c,
      client_name: `Latchkey (client_secret_${method})`,
      application_type: 'native',
      token_endpoint_auth_method: `client_secret_${method}`,
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    })),
    {
      ...introspector,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
  },
  async findAccount(_ctx, id) {
    if (id !== ACCOUNT.sub) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return { ...ACCOUNT, email_verified: true };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  // PKCE is required for public clients by default; S256 is the only method.
  rotateRefreshToken: true,
  ttl: {
    AccessToken: () => accessTokenTtl,
    AuthorizationCode: 60,
    DeviceCode: 600,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  // The device flow's default is to end sessions with the browser session; these
  // are offline sessions for a CLI.
  async expiresWithSession() {
    return false;
  },
});

provider.on('device_authorization.success', () => {
  counters.device_authorizations += 1;
  event('device_authorization.success');
});
provider.on('authorization.success', () => {
  counters.authorizations += 1;
  event('authorization.success');
});
provider.on('grant.success', (ctx) => {
  const type = String(ctx.oidc.params?.grant_type ?? 'unknown');
  counters.grants[type] = (counters.grants[type] ?? 0) + 1;
  for (const key of ['access_token', 'refresh_token', 'id_token']) {
    if (typeof ctx.body?.[key] === 'string') {
      issued.push(ctx.body[key]);
    }
  }
  event('grant.success', { grant_type: type });
});
provider.on('grant.error', (ctx, err) => {
  const code = String(err?.error ?? 'unknown');
  counters.grant_errors[code] = (counters.grant_errors[code] ?? 0) + 1;
  event('grant.error', { grant_type: String(ctx.oidc?.params?.grant_type ?? 'unknown'), error: code, description: String(err?.error_description ?? '') });
});
provider.on('grant.revoked', (ctx) => {
  const why = ctx.oidc?.route === 'token' ? 'reuse' : ctx.oidc?.route === 'revocation' ? 'revocation' : 'other';
  counters.grants_revoked[why] += 1;
  event('grant.revoked', { route: String(ctx.oidc?.route ?? 'unknown') });
});
provider.on('refresh_token.consumed', () => {
  counters.refresh_tokens_consumed += 1;
});
provider.on('revocation.error', (_ctx, err) => event('revocation.error', { error: String(err?.error ?? 'unknown') }));
provider.on('userinfo.error', (_ctx, err) => event('userinfo.error', { error: String(err?.error ?? 'unknown') }));
provider.on('server_error', (_ctx, err) => {
  counters.server_errors += 1;
  event('server_error', { message: String(err?.message ?? err) });
});

// Test-only additions in front of the package's routes, under /_interop/.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/_interop/')) {
    counters.paths[ctx.path] = (counters.paths[ctx.path] ?? 0) + 1;
  }
  if (ctx.path === '/_interop/counters' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = counters;
    return;
  }
  if (ctx.path === '/_interop/authorization-requests' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = authorizationRequests;
    return;
  }
  if (ctx.path === '/auth' && ctx.method === 'GET') {
    const { state, nonce, code_challenge, ...rest } = ctx.query;
    authorizationRequests.push(rest);
  }
  if (ctx.path === '/_interop/issued' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = issued;
    return;
  }
  if (ctx.path === '/_interop/destroy-access-token' && ctx.method === 'POST') {
    // ?token=…: deletes this one access token from the provider's store, as an
    // administrator or a key rotation would, leaving the grant and its refresh
    // token alone. (RFC 7009 revocation of an access token here revokes every
    // token of its grant, refresh tokens included.) The API proxy's tests use it
    // to make a token fail that Latchkey still thinks valid.
    const token = await provider.AccessToken.find(String(ctx.query.token ?? ''));
    if (!token) {
      ctx.status = 404;
      ctx.body = { error: 'no such access token' };
      return;
    }
    await token.destroy();
    event('access_token.destroyed');
    ctx.type = 'json';
    ctx.body = { destroyed: true };
    return;
  }
  if (ctx.path === '/_interop/config' && ctx.method === 'POST') {
    // ?access_token_ttl=SECS: applies to tokens issued from now on.
    const ttl = Number(ctx.query.access_token_ttl);
    if (!Number.isInteger(ttl) || ttl < 1) {
      ctx.status = 400;
      ctx.body = { error: 'access_token_ttl must be a positive integer' };
      return;
    }
    accessTokenTtl = ttl;
    event('config', { access_token_ttl: ttl });
    ctx.type = 'json';
    ctx.body = { access_token_ttl: ttl };
    return;
  }
  await next();
  if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
    ctx.body = { ...ctx.body, interval: deviceInterval };
  }
  // The package emits no success events for these; count answered requests.
  if (ctx.path === '/token/revocation' && ctx.status === 200) {
    counters.revocations += 1;
    event('revocation.answered');
  }
  if (ctx.path === '/me' && ctx.status === 200) {
    counters.userinfo += 1;
  }
  if (ctx.path === '/token/introspection' && ctx.status === 200) {
    counters.introspections += 1;
  }
});

server.on('request', provider.callback());

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

writeStdout(`${JSON.stringify({
  issuer,
  introspection_client: introspector,
  confidential_clients: confidential,
  account: { sub: ACCOUNT.sub, email: ACCOUNT.email, password: PASSWORD },
  access_token_ttl: accessTokenTtl,
  device_interval: deviceInterval,
})}\n`);
