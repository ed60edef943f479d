"""authgate.jose: the strict JWS/JWT codec. No HTTP, no storage, no I/O.

Every primitive comes from pyca/cryptography; parsing and policy are ours.
"""

from authgate.jose._json import loads_object
from authgate.jose.jws import MAX_TOKEN_SIZE, Header, sign, verify
from authgate.jose.jwt import DEFAULT_REQUIRED, ClaimsPolicy, decode, encode
from authgate.jose.keys import ALGORITHMS, Algorithm, Key, KeySet

__all__ = [
    "ALGORITHMS",
    "DEFAULT_REQUIRED",
    "MAX_TOKEN_SIZE",
    "Algorithm",
    "ClaimsPolicy",
    "Header",
    "Key",
    "KeySet",
    "decode",
    "encode",
    "loads_object",
    "sign",
    "verify",
]
