// A real OpenID Provider (panva's certified oidc-provider) on loopback, for the tests and
// `nattillsyn demo --sso`. Test users sign in with any password on the provider's own
// development login page. Test-only controls under /__test/ (loopback only):
//   POST /__test/setup?redirect_uri=U[&post_logout_redirect_uri=P]  register the client's URIs
//   POST /__test/rotate                     new signing key (old one no longer published)
//   POST /__test/tamper?mode=M              the next token response's ID token is altered:
//        wrong_aud | expired (re-signed with the real key) | bad_sig (signed by another key)
//        | old_key (signed with the key retired by the last rotation)
//   POST /__test/user?id=ID&groups=a,b[&active=false]  change a user's claims
// Prints one JSON line {"issuer": ...} on stdout when ready.
import http from 'node:http';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'client-id': { type: 'string', default: 'nattillsyn' },
    'client-secret': { type: 'string', default: 'test-secret' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'post-logout-redirect-uri': { type: 'string', multiple: true, default: [] },
  },
});

const HSA = 'SE2321000016-NT01';  // the demo's and the tests' unit (site-1)
const users = {
  'anna.natt': { name: 'Anna Natt', groups: ['nattillsyn-nattpersonal'], hsa_unit: HSA },
  'nils.natt': { name: 'Nils Natt', groups: ['nattillsyn-nattpersonal'], hsa_unit: HSA },
  'cecilia.chef': { name: 'Cecilia Chef', groups: ['nattillsyn-enhetschef'], hsa_unit: HSA },
  'ulla.utv': { name: 'Ulla Utvärdering', groups: ['nattillsyn-utvardering'], hsa_unit: HSA },
  'ivar.it': { name: 'Ivar IT', groups: ['nattillsyn-it'] },
  'olle.okand': { name: 'Olle Okänd', groups: ['ekonomi'], hsa_unit: HSA },
};

let keyCount = 0;
async function newKey() {
  keyCount += 1;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: `key-${keyCount}-${Date.now()}`, alg: 'RS256', use: 'sig' };
}

let signingKey = await newKey();
let retiredKey = null;  // the key before the last rotation (no longer published)
let redirectUris = [...args['redirect-uri']];
let postLogoutUris = [...args['post-logout-redirect-uri']];
let tamper = null;
let provider;

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/__test/')) {
    control(url).then((out) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(out)); },
      (err) => { res.writeHead(400); res.end(String(err)); });
    return;
  }
  provider.callback()(req, res);
});
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

function build() {
  const p = new Provider(issuer, {
    clients: [{
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: redirectUris.length ? redirectUris : [`${issuer}/unused`],
      post_logout_redirect_uris: postLogoutUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signingKey] },
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'], groups: ['groups', 'hsa_unit', 'nattillsyn_active'] },
    conformIdTokenClaims: false,  // claims in the ID token, as Entra ID does with group claims
    pkce: { required: () => true, methods: ['S256'] },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    cookies: { keys: ['test-only-cookie-key'] },
    ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
    async findAccount(ctx, id) {
      const u = users[id] || { name: id, groups: [] };
      return {
        accountId: id,
        async claims() {
          const c = { sub: id, name: u.name, preferred_username: id, email: `${id}@kommun.example`, groups: u.groups };
          if (u.hsa_unit) c.hsa_unit = u.hsa_unit;
          if (u.active === false) c.nattillsyn_active = false;
          return c;
        },
      };
    },
    async loadExistingGrant(ctx) {  // no consent screen: the municipality pre-approved the app
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email groups');
      await grant.save();
      return grant;
    },
  });
  p.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
      const mode = tamper;
      tamper = null;
      ctx.body = { ...ctx.body, id_token: await tampered(ctx.body.id_token, mode) };
    }
  });
  return p;
}

async function tampered(idToken, mode) {
  const claims = decodeJwt(idToken);
  const header = decodeProtectedHeader(idToken);
  let key = await importJWK(signingKey, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'wrong_aud') claims.aud = 'some-other-client';
  else if (mode === 'expired') { claims.iat = now - 7200; claims.exp = now - 3600; }
  else if (mode === 'bad_sig') key = await importJWK(await newKey(), 'RS256');  // same kid, other key
  else if (mode === 'old_key' && retiredKey) {  // a token signed with the retired key
    return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: retiredKey.kid })
      .sign(await importJWK(retiredKey, 'RS256'));
  }
  else throw new Error(`unknown tamper mode ${mode}`);
  return new SignJWT(claims).setProtectedHeader({ alg: header.alg, kid: header.kid }).sign(key);
}

async function control(url) {
  const q = url.searchParams;
  switch (url.pathname) {
    case '/__test/setup':
      redirectUris = q.getAll('redirect_uri');
      postLogoutUris = q.getAll('post_logout_redirect_uri');
      provider = build();
      return { issuer };
    case '/__test/rotate':
      retiredKey = signingKey;
      signingKey = await newKey();
      provider = build();
      return { kid: signingKey.kid };
    case '/__test/tamper':
      tamper = q.get('mode');
      return { tamper };
    case '/__test/user': {
      const id = q.get('id');
      users[id] = { ...(users[id] || { name: id }), groups: (q.get('groups') || '').split(',').filter(Boolean) };
      if (q.has('active')) users[id].active = q.get('active') !== 'false';
      return users[id];
    }
    default:
      throw new Error('unknown control');
  }
}

provider = build();
process.stdout.write(`${JSON.stringify({ issuer, kid: signingKey.kid })}\n`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
