// A relying party built on openid-client (OpenID-certified), used unmodified by
// tests/oidc/test_rp_node.py. It speaks JSON lines on stdin/stdout:
//   argv[2]: {issuer, client_id, client_secret?, redirect_uri, post_logout_redirect_uri, scope}
//   out: {"authorize_url"}             the test's browser opens it and logs in
//   in:  {"callback_url"}              where the browser was sent back to
//   out: {"claims", "userinfo", "refreshed", "end_session_url"}   or {"error"}
import * as client from 'openid-client';
import * as readline from 'node:readline';

const cfg = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function main() {
  const auth = cfg.client_secret ? client.ClientSecretBasic(cfg.client_secret) : client.None();
  const options = cfg.issuer.startsWith('http://') ? { execute: [client.allowInsecureRequests] } : {};
  const config = await client.discovery(new URL(cfg.issuer), cfg.client_id, undefined, auth, options);

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: cfg.redirect_uri,
    scope: cfg.scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  out({ authorize_url: url.href });

  const rl = readline.createInterface({ input: process.stdin });
  const line = await new Promise((resolve) => rl.once('line', resolve));
  rl.close();
  const { callback_url } = JSON.parse(line);

  const tokens = await client.authorizationCodeGrant(config, new URL(callback_url), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: cfg.post_logout_redirect_uri,
    state: 'bye',
  });
  out({
    claims,
    userinfo,
    first: { access_token: tokens.access_token, refresh_token: tokens.refresh_token, scope: tokens.scope },
    refreshed: {
      access_token: refreshed.access_token,
      refresh_token: refreshed.refresh_token,
      has_id_token: Boolean(refreshed.id_token),
    },
    end_session_url: endSession.href,
  });
}

main().catch((err) => {
  out({ error: String(err && err.code ? `${err.code}: ${err.message}` : err) });
  process.exitCode = 1;
});
