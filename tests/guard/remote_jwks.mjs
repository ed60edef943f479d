// Verifies authgate access tokens with Node `jose`'s createRemoteJWKSet, against a running
// server's JWKS URL (driven by test_interop.py). `jose` comes from tests/interop (npm ci there).
//
// Reads ONE JSON request on stdin:
//   {jwks_uri, issuer, audience, tokens: [token, ...], now? (seconds)}
// Writes {results: [{ok: true, header, claims} | {ok: false, code, message}, ...]}, one per
// token, in order. Exits 0 when every token was tried (refusals included).

import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "interop", "package.json"));
const { createRemoteJWKSet, jwtVerify } = await import(pathToFileURL(require.resolve("jose")));

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const request = await readStdin();
const jwks = createRemoteJWKSet(new URL(request.jwks_uri));
const options = {
  issuer: request.issuer,
  audience: request.audience,
  typ: "at+jwt",
  algorithms: ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
};
if (request.now !== undefined) options.currentDate = new Date(request.now * 1000);
const results = [];
for (const token of request.tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, options);
    results.push({ ok: true, header: protectedHeader, claims: payload });
  } catch (error) {
    results.push({ ok: false, code: error.code ?? null, message: String(error.message) });
  }
}
process.stdout.write(JSON.stringify({ results }));
