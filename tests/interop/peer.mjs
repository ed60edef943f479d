// Node peer for authgate's interop tests (driven by test_node.py).
//
// Reads ONE JSON request on stdin: {"jobs": [job, ...]} (a bare list of jobs is accepted too).
// A job is:
//   {id, lib: "jose" | "jsonwebtoken", op: "sign" | "verify", alg, jwk,
//    claims? (sign), token? (verify), issuer?, audience?, typ?, now? (seconds, verify clock)}
// `jwk` is private (or a secret) for "sign" and public (or a secret) for "verify"; a signed
// token carries `kid: jwk.kid`. Writes one JSON document on stdout: {"results": [result, ...]},
// in job order, where a result is
//   {id, ok: true, token}                        for sign
//   {id, ok: true, header, claims}               for verify
//   {id, ok: false, error, code, message}        when the library refused
// The process exits 0 when every job ran (refusals included); a bad request exits 2.
// Node starts slowly, so the tests batch every job of a module into one run.

import { Buffer } from "node:buffer";
import crypto from "node:crypto";
import { SignJWT, importJWK, jwtVerify } from "jose";
import jsonwebtoken from "jsonwebtoken";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function nodeKey(jwk, op) {
  // jsonwebtoken takes node KeyObjects; secrets are raw bytes.
  if (jwk.kty === "oct") return crypto.createSecretKey(Buffer.from(jwk.k, "base64url"));
  if (op === "sign") return crypto.createPrivateKey({ key: jwk, format: "jwk" });
  return crypto.createPublicKey({ key: jwk, format: "jwk" });
}

async function runJose(job) {
  const key = await importJWK(job.jwk, job.alg);
  if (job.op === "sign") {
    const header = { alg: job.alg, typ: job.typ ?? "JWT" };
    if (job.jwk.kid !== undefined) header.kid = job.jwk.kid;
    const token = await new SignJWT(job.claims).setProtectedHeader(header).sign(key);
    return { token };
  }
  const options = { algorithms: [job.alg] };
  if (job.issuer !== undefined) options.issuer = job.issuer;
  if (job.audience !== undefined) options.audience = job.audience;
  if (job.typ !== undefined) options.typ = job.typ;
  if (job.now !== undefined) options.currentDate = new Date(job.now * 1000);
  const { payload, protectedHeader } = await jwtVerify(job.token, key, options);
  return { header: protectedHeader, claims: payload };
}

function runJsonwebtoken(job) {
  const key = nodeKey(job.jwk, job.op);
  if (job.op === "sign") {
    const options = { algorithm: job.alg, header: { alg: job.alg, typ: job.typ ?? "JWT" } };
    if (job.jwk.kid !== undefined) options.keyid = job.jwk.kid;
    return { token: jsonwebtoken.sign(job.claims, key, options) };
  }
  const options = { algorithms: [job.alg], complete: true };
  if (job.issuer !== undefined) options.issuer = job.issuer;
  if (job.audience !== undefined) options.audience = job.audience;
  if (job.now !== undefined) options.clockTimestamp = job.now;
  const { header, payload } = jsonwebtoken.verify(job.token, key, options);
  // jsonwebtoken has no typ check of its own.
  if (job.typ !== undefined && header.typ !== job.typ) {
    const err = new Error(`unexpected typ ${JSON.stringify(header.typ)}`);
    err.name = "UnexpectedTyp";
    throw err;
  }
  return { header, claims: payload };
}

async function runJob(job) {
  const base = { id: job.id };
  try {
    let out;
    if (job.lib === "jose") out = await runJose(job);
    else if (job.lib === "jsonwebtoken") out = runJsonwebtoken(job);
    else throw new Error(`unknown lib ${JSON.stringify(job.lib)}`);
    return { ...base, ok: true, ...out };
  } catch (err) {
    return {
      ...base,
      ok: false,
      error: err?.name ?? "Error",
      code: err?.code ?? null,
      message: String(err?.message ?? err),
    };
  }
}

async function main() {
  let request;
  try {
    request = JSON.parse(await readStdin());
  } catch (err) {
    process.stderr.write(`peer.mjs: stdin is not JSON: ${err.message}\n`);
    process.exit(2);
  }
  const jobs = Array.isArray(request) ? request : request?.jobs;
  if (!Array.isArray(jobs)) {
    process.stderr.write('peer.mjs: expected {"jobs": [...]} or a list of jobs\n');
    process.exit(2);
  }
  const results = [];
  for (const job of jobs) results.push(await runJob(job));
  process.stdout.write(JSON.stringify({ results }));
}

await main();
