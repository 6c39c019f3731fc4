"""Directive validation: `nginx -t` rejects every invalid use with a message that names the
directive, the value and the file:line; valid uses pass."""

import re

import pytest

VALID = """
usp_handle_ism;
usp_iss_pass_through;
usp_prefer_static off;
usp_skip_rewrite on;
usp_handle_f4f;
usp_handle_api;
usp_disable_mmap;
usp_dynamic_time_shift_buffer_depth on;
"""


def full_config(n, location_body: str, http_extra: str = "") -> str:
    return n.config(f"location /v/ {{\n{location_body}\n}}", http_extra=http_extra)


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in config")


def test_valid_configuration_passes(make_nginx):
    n = make_nginx()
    key = n.prefix / "conf" / "license.key"
    key.write_text("k\n")
    conf = full_config(n, VALID + """
        ism_proxy_pass http://127.0.0.1:9000/bucket/;
        s3_access_key AKIAEXAMPLE;
        s3_secret_key secret/Key+1;
        s3_region eu-west-1;
        s3_security_token token;
        origin_remote_ttl 5m;
    """, http_extra=f"usp_license_key {key};\norigin_cache_size 256m;")
    r = n.test_config(conf)
    assert r.returncode == 0, r.stderr


# (name, location body or None, http extra, expected message regex, line needle)
INVALID = [
    ("bad switch word", 'usp_handle_ism yes;', "",
     r'invalid value "yes" in "usp_handle_ism" directive, it must be "on" or "off"', "usp_handle_ism"),
    ("bad switch word 2", 'usp_disable_mmap enable;', "",
     r'invalid value "enable" in "usp_disable_mmap" directive', "usp_disable_mmap"),
    ("tsbd needs a value", 'usp_dynamic_time_shift_buffer_depth;', "",
     r'invalid number of arguments in "usp_dynamic_time_shift_buffer_depth" directive',
     "usp_dynamic_time_shift_buffer_depth"),
    ("tsbd bad word", 'usp_dynamic_time_shift_buffer_depth maybe;', "",
     r'invalid value "maybe" in "usp_dynamic_time_shift_buffer_depth" directive',
     "usp_dynamic_time_shift_buffer_depth"),
    ("duplicate switch", 'usp_handle_ism;\nusp_handle_ism on;', "",
     r'"usp_handle_ism" directive is duplicate', "usp_handle_ism on"),
    ("proxy pass scheme", 'ism_proxy_pass ftp://host/;', "",
     r'invalid value "ftp://host/" in "ism_proxy_pass" directive, the URL must start with http',
     "ism_proxy_pass"),
    ("proxy pass port", 'ism_proxy_pass http://host:99999/;', "",
     r'invalid value "http://host:99999/" in "ism_proxy_pass" directive, invalid port', "ism_proxy_pass"),
    ("proxy pass no host", 'ism_proxy_pass http:///x;', "",
     r'invalid value "http:///x" in "ism_proxy_pass" directive, the URL has no host', "ism_proxy_pass"),
    ("proxy pass credentials", 'ism_proxy_pass http://u:p@host/;', "",
     r'"ism_proxy_pass" directive, the URL must not carry user credentials', "ism_proxy_pass"),
    ("duplicate proxy pass", 'ism_proxy_pass http://a/;\nism_proxy_pass http://b/;', "",
     r'"ism_proxy_pass" directive is duplicate', "http://b/"),
    ("access key without secret", 'ism_proxy_pass http://127.0.0.1:9000/;\ns3_access_key AKIA;', "",
     r'"s3_access_key" is set without "s3_secret_key"', "s3_access_key"),
    ("secret without access key", 's3_secret_key abc;', "",
     r'"s3_secret_key" is set without "s3_access_key"', "s3_secret_key"),
    ("token without keys", 's3_security_token tok;', "",
     r'"s3_security_token" is set without', "s3_security_token"),
    ("region with illegal characters", 's3_access_key a;\ns3_secret_key b;\ns3_region EU_West/1;', "",
     r'invalid value "EU_West/1" in "s3_region" directive, a region holds only', "s3_region"),
    ("secret with a space is refused and not echoed", "s3_access_key a;\ns3_secret_key 'b c';", "",
     r'invalid value "…" in "s3_secret_key" directive, it must be printable ASCII', "s3_secret_key"),
    ("duplicate region", 's3_region a;\ns3_region b;', "",
     r'"s3_region" directive is duplicate', "s3_region b"),
    ("license key missing file", None, "usp_license_key /nonexistent/usp.key;",
     r'invalid value "/nonexistent/usp.key" in "usp_license_key" directive, cannot read the file',
     "usp_license_key"),
    ("switch in the wrong context", None, "usp_handle_ism;",
     r'"usp_handle_ism" directive is not allowed here', "usp_handle_ism"),
    ("license key in the wrong context", 'usp_license_key /etc/hostname;', "",
     r'"usp_license_key" directive is not allowed here', "usp_license_key"),
    ("cache size word", None, "origin_cache_size lots;",
     r'invalid value "lots" in "origin_cache_size" directive, expected a size', "origin_cache_size"),
    ("cache size too small", None, "origin_cache_size 100k;",
     r'invalid value "100k" in "origin_cache_size" directive, the size must be between',
     "origin_cache_size"),
    ("duplicate cache size", None, "origin_cache_size 64m;\norigin_cache_size 32m;",
     r'"origin_cache_size" directive is duplicate', "origin_cache_size 32m"),
    ("cache size in a location", 'origin_cache_size 64m;', "",
     r'"origin_cache_size" directive is not allowed here', "origin_cache_size"),
    ("remote ttl word", 'origin_remote_ttl soon;', "",
     r'invalid value "soon" in "origin_remote_ttl" directive, expected seconds', "origin_remote_ttl"),
    ("proxy pass beside ism_proxy_pass", 'proxy_pass http://127.0.0.1:1/;\nism_proxy_pass http://127.0.0.1:2/;', "",
     r'"ism_proxy_pass" directive is duplicate', "ism_proxy_pass"),
    ("usp_handle_ism off beside ism_proxy_pass",
     'usp_handle_ism off;\nism_proxy_pass http://127.0.0.1:9000/;', "",
     r'"usp_handle_ism off" and "ism_proxy_pass" in one location', "ism_proxy_pass"),
    ("ism_proxy_pass beside origin_status", 'origin_status;\nism_proxy_pass http://127.0.0.1:9000/;', "",
     r'"ism_proxy_pass" and "origin_status" in one location', "ism_proxy_pass"),
    ("status map to a code that drops the connection", 'origin_status_map 502 444;', "",
     r'invalid value "502 444" in "origin_status_map" directive, "444" is not a status a client '
     r'receives: nginx\'s code to close the connection', "origin_status_map"),
    ("too many arguments", 'usp_handle_ism on off;', "",
     r'invalid number of arguments in "usp_handle_ism" directive', "usp_handle_ism"),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_configuration_fails_with_clear_message(make_nginx, case):
    _, body, http_extra, message, needle = case
    n = make_nginx()
    conf = full_config(n, body or "usp_handle_ism;", http_extra=http_extra)
    r = n.test_config(conf)
    assert r.returncode != 0, f"nginx -t accepted:\n{conf}"
    assert re.search(message, r.stderr), r.stderr
    line = line_of(conf, needle)
    assert f"test.conf:{line}" in r.stderr, f"expected file:line {line}: {r.stderr}"


def test_license_key_relative_to_conf_dir_and_empty_file(make_nginx):
    n = make_nginx()
    (n.prefix / "conf" / "lic.key").write_text("abc\n")
    r = n.test_config(full_config(n, "usp_handle_ism;", http_extra="usp_license_key lic.key;"))
    assert r.returncode == 0, r.stderr
    (n.prefix / "conf" / "empty.key").write_text("\n")
    r = n.test_config(full_config(n, "usp_handle_ism;", http_extra="usp_license_key empty.key;"))
    assert r.returncode != 0
    assert "the file is empty" in r.stderr


def test_s3_settings_inherit_as_a_set(make_nginx):
    """A nested location that sets only a region does not mix with inherited keys: it must
    give its own keys."""
    n = make_nginx()
    conf = n.config("""
        location /s3/ {
            s3_access_key a;
            s3_secret_key b;
            usp_handle_ism;
            location /s3/eu/ {
                s3_region eu-west-1;
                s3_access_key c;
            }
        }
    """)
    r = n.test_config(conf)
    assert r.returncode != 0
    assert '"s3_access_key" is set without "s3_secret_key"' in r.stderr
