// Configuration of the OpenID provider that server/tests/token_oauth2.rs starts: the certified
// `oidc-provider` package with the client-credentials grant enabled, issuing ES256 JWT access
// tokens. It adds the owner and device id that the DPS sends as extra form values (plgd's way) as
// claims, and logs one line per token request so the test can tell cached tokens from new ones.
//
// Environment: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_TOKEN_TTL (seconds, default 300).
// Prints `listening <issuer>` once it serves, `token request` per POST to the token endpoint.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const OWNER_CLAIM = 'https://plgd.dev/owner';
const DEVICE_ID_CLAIM = 'https://plgd.dev/deviceId';
const clientId = process.env.OIDC_CLIENT_ID ?? 'dps';
const clientSecret = process.env.OIDC_CLIENT_SECRET ?? 'secret';
const ttl = Number(process.env.OIDC_TOKEN_TTL ?? 300);

const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'fixture' };

// The form as posted (the token endpoint keeps only the parameters it knows in ctx.oidc.params).
const form = (ctx) => ctx.oidc.body ?? {};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
    }],
    jwks: { keys: [signingKey] },
    ttl: { ClientCredentials: ttl },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // plgd sends the audience as `audience` (as Auth0 takes it); RFC 8707 `resource` works too.
        defaultResource: (ctx, client, oneOf) => oneOf ?? form(ctx).audience,
        getResourceServerInfo: (ctx, resource) => ({
          audience: resource,
          scope: 'hub',
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttl,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: (ctx) => {
      const claims = {};
      for (const name of [OWNER_CLAIM, DEVICE_ID_CLAIM]) {
        if (typeof form(ctx)[name] === 'string') claims[name] = form(ctx)[name];
      }
      return claims;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', (req) => {
    if (req.method === 'POST' && req.url.startsWith('/token')) console.log('token request');
  });
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});
