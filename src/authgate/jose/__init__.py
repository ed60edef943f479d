"""authgate.jose: the strict JWS/JWT codec. No HTTP, no storage, no I/O.

Every primitive comes from pyca/cryptography; parsing and policy are ours.
"""

from authgate.jose._b64 import b64decode, b64encode_str
from authgate.jose._json import MAX_JSON_DEPTH, loads_object
from authgate.jose.jws import MAX_TOKEN_SIZE, Header, sign, verify
from authgate.jose.jwt import DEFAULT_REQUIRED, ClaimsPolicy, decode, encode
from authgate.jose.keys import ALGORITHMS, Algorithm, Key, KeySet

__all__ = [
    "ALGORITHMS",
    "DEFAULT_REQUIRED",
    "MAX_JSON_DEPTH",
    "MAX_TOKEN_SIZE",
    "Algorithm",
    "ClaimsPolicy",
    "Header",
    "Key",
    "KeySet",
    "b64decode",
    "b64encode_str",
    "decode",
    "encode",
    "loads_object",
    "sign",
    "verify",
]
