// Node `jose` verifies authgate's access tokens with createRemoteJWKSet, the JWKS URL found
// through the RFC 8414 metadata document (driven by test_jwks_verifiers.py).
//
// stdin: {"metadata_url", "issuer", "audience", "tokens": {id: token}}
// stdout: {"jwks_uri", "results": {id: {ok: true, header, payload} | {ok: false, code}}}
// jose is the copy installed for tests/interop (npm ci --prefix tests/interop).

import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const interop = fileURLToPath(new URL("../interop/package.json", import.meta.url));
const resolved = createRequire(interop).resolve("jose");
const { createRemoteJWKSet, jwtVerify } = await import(pathToFileURL(resolved).href);

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const metadata = await (await fetch(request.metadata_url)).json();
const JWKS = createRemoteJWKSet(new URL(metadata.jwks_uri));
const results = {};
for (const [id, token] of Object.entries(request.tokens)) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, JWKS, {
      issuer: request.issuer,
      audience: request.audience,
      typ: "at+jwt",
    });
    results[id] = { ok: true, header: protectedHeader, payload };
  } catch (err) {
    results[id] = { ok: false, code: err.code ?? String(err.name), message: String(err.message) };
  }
}
process.stdout.write(JSON.stringify({ jwks_uri: metadata.jwks_uri, results }));
