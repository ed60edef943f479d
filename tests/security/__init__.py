"""Security tests: each attack class of RFC 8725 and each published JWT library CVE.

Where a CVE applies, the module or test is named after it:

- test_cve_2015_9235_alg_none            alg "none" (jsonwebtoken); RFC 8725 2.1, 3.1
- test_key_confusion                     RS/ES/EdDSA -> HS with every public-key encoding:
                                         CVE-2015-9235, CVE-2017-11424, CVE-2022-29217,
                                         CVE-2024-33663, CVE-2022-23541
- test_algorithm_binding                 cross-family algorithms, CVE-2022-23539 (weak key
                                         types), short secrets, invalid curves; RFC 8725 3.2-3.5
- test_cve_2022_21449_psychic_signatures ECDSA r/s out of range, DER, wrong lengths
- test_cve_2016_7036_hmac_comparison     constant-time HMAC comparison
- test_cve_2022_23540_insecure_defaults  mandatory allowlist and policy, no off switch
- test_header_injection                  jwk (CVE-2018-0114), jku, x5u, x5c, x5t, kid
                                         injection, crit, b64, zip (CVE-2024-33664), cty
- test_token_shape                       JWE and JSON serialization, segments, size cap
- test_encoding                          base64url and JSON rules; RFC 8725 2.6, 3.7
- test_claims                            every claim rule and typ; RFC 8725 2.7, 2.8, 3.8-3.12
- test_fuzz_corpus                       only authgate errors escape, for random input
- test_properties                        hypothesis: round trips, single-change mutations,
                                         the claim rules against an oracle
"""
