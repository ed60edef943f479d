"""A Flask API protected by authgate (``pip install 'authgate[flask]'``).

    export AUTHGATE_CLIENT_ID=... AUTHGATE_CLIENT_SECRET=...   # see fastapi_app.py
    flask --app examples/flask_app.py run --port 8003

The guard starts on the first request of each worker process.
"""

import os

from flask import Flask, g

from authgate.guard import Guard
from authgate.guard.flask import FlaskGuard

guard = Guard(
    issuer=os.environ.get("AUTHGATE_ISSUER", "http://127.0.0.1:8000"),
    audience=os.environ.get("AUTHGATE_AUDIENCE", "authgate"),
    client_id=os.environ["AUTHGATE_CLIENT_ID"],
    client_secret=os.environ["AUTHGATE_CLIENT_SECRET"],
)
app = Flask(__name__)
FlaskGuard(guard, app)  # g.principal for every request that carries a token


@app.get("/")
def public() -> dict[str, object]:
    return {"hello": "anyone", "logged_in": g.principal is not None}


@app.get("/me")
@guard.flask_required()
def me() -> dict[str, object]:
    return {"sub": g.principal.sub, "permissions": sorted(g.principal.permissions)}


@app.post("/posts")
@guard.flask_required("posts:write")
def write() -> dict[str, str]:
    return {"written_by": g.principal.sub}
