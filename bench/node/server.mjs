// The Node anchors of bench/guard.py: the stack of the original Node.js JWT guides.
//
//   node server.mjs express|http none|hs256|hs256-keyobject|es256 PORT
//
// GET /posts answers {"ok":true}. With a key it first does what the guides do: take the
// token after "Bearer ", jsonwebtoken's verify (algorithm allowlist, audience, issuer), then
// check the "posts:read" permission in the scope claim: 401 / 403 otherwise.
//
// hs256 and es256 pass the key as the guides do: the secret string (BENCH_HS_SECRET,
// base64url text) and the PEM text (BENCH_ES_PEM). jsonwebtoken 9 then rebuilds a key
// object on every call, which costs most of its time for HS256; hs256-keyobject passes a
// KeyObject made once (crypto.createSecretKey), jsonwebtoken's fast form.

import { Buffer } from "node:buffer";
import crypto from "node:crypto";
import http from "node:http";
import express from "express";
import jwt from "jsonwebtoken";

const [framework, auth, port] = process.argv.slice(2);
const options = {
  algorithms: auth.startsWith("hs256") ? ["HS256"] : ["ES256"],
  audience: process.env.BENCH_AUDIENCE,
  issuer: process.env.BENCH_ISSUER,
};
const keys = {
  none: null,
  hs256: process.env.BENCH_HS_SECRET_TEXT ?? "",
  "hs256-keyobject": crypto.createSecretKey(Buffer.from(process.env.BENCH_HS_SECRET_TEXT ?? "")),
  es256: process.env.BENCH_ES_PEM ?? "",
};
if (!(auth in keys)) throw new Error(`unknown auth ${auth}`);
const key = keys[auth];
const body = JSON.stringify({ ok: true });

function check(header) {
  if (key === null) return 200;
  if (typeof header !== "string" || !header.startsWith("Bearer ")) return 401;
  let claims;
  try {
    claims = jwt.verify(header.slice(7), key, options);
  } catch {
    return 401;
  }
  return String(claims.scope ?? "").split(" ").includes("posts:read") ? 200 : 403;
}

if (framework === "express") {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  const authenticate = (req, res, next) => {
    const status = check(req.headers.authorization);
    if (status !== 200) return res.sendStatus(status);
    next();
  };
  app.get("/posts", authenticate, (req, res) => res.json({ ok: true }));
  app.listen(Number(port), "127.0.0.1");
} else {
  http
    .createServer((req, res) => {
      const status = req.url === "/posts" ? check(req.headers.authorization) : 404;
      if (status !== 200) {
        res.writeHead(status);
        res.end();
        return;
      }
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    })
    .listen(Number(port), "127.0.0.1");
}
