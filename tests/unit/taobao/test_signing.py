"""TOP request signing (reference §1.4): worked vectors, an independent reimplementation, laws."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.taobao.signing import (
    SIGN_METHODS,
    SignMethod,
    drop_empty,
    sign,
    signing_string,
    verify,
)

DOC_PARAMS = {"foo": "1", "bar": "2", "foo_bar": "3", "foobar": "4"}
DOC_SECRET = "secret"

# A realistic full request: system parameters plus business parameters, one value in Chinese.
REAL_SECRET = "0b7f3c9e5a1d4e8f9a2b6c4d8e0f1a3b"
REAL_PARAMS = {
    "method": "taobao.item.quantity.update",
    "app_key": "12345678",
    "session": "6100a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d2200000001",
    "timestamp": "2024-05-01 12:00:00",
    "format": "json",
    "v": "2.0",
    "partner_id": "top-sdk-python-20240501",
    "simplify": "true",
    "num_iid": "600123456789",
    "outer_id": "红色-XL/纯棉",
    "quantity": "5",
    "type": "1",
}


def reference_sign(params: Mapping[str, str], secret: str, method: str) -> str:
    """The published algorithm, written again from the reference text, not from the module."""
    pairs = sorted(
        ((k.encode("utf-8"), v.encode("utf-8")) for k, v in params.items() if k != "sign"),
        key=lambda kv: kv[0],
    )
    data = b"".join(k + v for k, v in pairs)
    key = secret.encode("utf-8")
    if method == "md5":
        digest = hashlib.md5(key + data + key, usedforsecurity=False).hexdigest()
    elif method == "hmac":
        digest = hmac.new(key, data, hashlib.md5).hexdigest()
    else:
        digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    return digest.upper()


# --- worked vectors ------------------------------------------------------------------------


def test_doc_example_signing_string() -> None:
    assert signing_string(DOC_PARAMS) == "bar2foo1foo_bar3foobar4"


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("md5", "4B4AC0F2D69BA521FFDE55A2BBEE3025"),
        ("hmac", "26C775E5D0EB124C248184BFA79CA514"),
        ("hmac-sha256", "1C52CEB1EDD0E67254A35412A976973A383608B65620DDEB0D2469F8370F3ADE"),
    ],
)
def test_reference_worked_vectors(method: SignMethod, expected: str) -> None:
    assert sign(DOC_PARAMS, DOC_SECRET, method) == expected
    assert reference_sign(DOC_PARAMS, DOC_SECRET, method) == expected


@pytest.mark.parametrize("method", SIGN_METHODS)
def test_realistic_request_matches_independent_implementation(method: SignMethod) -> None:
    params = {**REAL_PARAMS, "sign_method": method}
    assert sign(params, REAL_SECRET, method) == reference_sign(params, REAL_SECRET, method)


def test_realistic_request_by_hand_md5() -> None:
    """Spell the md5 digest out in full: secret + sorted name/value pairs + secret."""
    params = {**REAL_PARAMS, "sign_method": "md5"}
    concat = (
        "app_key12345678"
        "formatjson"
        "methodtaobao.item.quantity.update"
        "num_iid600123456789"
        "outer_id红色-XL/纯棉"
        "partner_idtop-sdk-python-20240501"
        "quantity5"
        "session6100a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d2200000001"
        "sign_methodmd5"
        "simplifytrue"
        "timestamp2024-05-01 12:00:00"
        "type1"
        "v2.0"
    )
    assert signing_string(params) == concat
    raw = (REAL_SECRET + concat + REAL_SECRET).encode("utf-8")
    expected = hashlib.md5(raw, usedforsecurity=False).hexdigest().upper()
    assert sign(params, REAL_SECRET, "md5") == expected


def test_realistic_request_by_hand_hmac_sha256() -> None:
    params = {**REAL_PARAMS, "sign_method": "hmac-sha256"}
    concat = signing_string(params).encode("utf-8")
    assert "outer_id红色-XL/纯棉".encode() in concat  # raw UTF-8, not URL-encoded
    expected = hmac.new(REAL_SECRET.encode(), concat, hashlib.sha256).hexdigest().upper()
    assert sign(params, REAL_SECRET, "hmac-sha256") == expected


@pytest.mark.parametrize(("method", "length"), [("md5", 32), ("hmac", 32), ("hmac-sha256", 64)])
def test_output_is_upper_case_hex(method: SignMethod, length: int) -> None:
    digest = sign(REAL_PARAMS, REAL_SECRET, method)
    assert len(digest) == length
    assert digest == digest.upper()
    int(digest, 16)


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="sha1"):
        sign(DOC_PARAMS, DOC_SECRET, "sha1")  # type: ignore[arg-type]


# --- what is signed, in which order ----------------------------------------------------------


def test_sign_parameter_is_excluded() -> None:
    signed = {**DOC_PARAMS, "sign": "WHATEVER"}
    assert signing_string(signed) == signing_string(DOC_PARAMS)
    for method in SIGN_METHODS:
        assert sign(signed, DOC_SECRET, method) == sign(DOC_PARAMS, DOC_SECRET, method)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"foobar": "4", "foo_bar": "3"}, "foo_bar3foobar4"),  # '_' (0x5F) < 'b' (0x62)
        ({"alpha": "a", "Zeta": "z"}, "Zetazalphaa"),  # upper case first
        ({"b": "2", "B": "1", "_": "0", "1": "x"}, "1xB1_0b2"),
        ({"foo": "1", "fo": "2"}, "fo2foo1"),  # a prefix sorts first
    ],
)
def test_sort_order_is_byte_order(params: dict[str, str], expected: str) -> None:
    assert signing_string(params) == expected


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=8))
def test_signing_string_sorts_by_utf8_bytes(params: dict[str, str]) -> None:
    names = sorted((k for k in params if k != "sign"), key=lambda k: k.encode("utf-8"))
    assert signing_string(params) == "".join(k + params[k] for k in names)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"a": "1", "b": "", "c": "  ", "d": "\t\n"}, {"a": "1"}),
        ({"": "orphan", "a": "0"}, {"a": "0"}),  # "0" is a value, not empty
        ({"outer_id": " 红 "}, {"outer_id": " 红 "}),  # kept verbatim
        ({}, {}),
    ],
)
def test_drop_empty(params: dict[str, str], expected: dict[str, str]) -> None:
    assert drop_empty(params) == expected


# --- verify ----------------------------------------------------------------------------------


def _signed(
    params: Mapping[str, str], method: SignMethod, secret: str = REAL_SECRET
) -> dict[str, str]:
    with_method = {**params, "sign_method": method}
    return {**with_method, "sign": sign(with_method, secret, method)}


@pytest.mark.parametrize("method", SIGN_METHODS)
def test_verify_accepts_a_good_signature(method: SignMethod) -> None:
    assert verify(_signed(REAL_PARAMS, method), REAL_SECRET)


@pytest.mark.parametrize("method", SIGN_METHODS)
def test_verify_accepts_lower_case_sign(method: SignMethod) -> None:
    params = _signed(REAL_PARAMS, method)
    params["sign"] = params["sign"].lower()
    assert verify(params, REAL_SECRET)


def test_verify_defaults_to_md5_without_sign_method() -> None:
    params = {**DOC_PARAMS, "sign": "4B4AC0F2D69BA521FFDE55A2BBEE3025"}
    assert verify(params, DOC_SECRET)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("quantity", "6"),
        ("outer_id", "红色-XL/纯棉 "),
        ("timestamp", "2024-05-01 12:00:01"),
        ("extra", "1"),
        ("sign_method", "md5"),  # signed as hmac-sha256, then relabelled
        ("sign_method", "sha1"),  # unknown method
        ("sign", ""),
        ("sign", "00"),
    ],
)
def test_verify_rejects_tampering(change: str, value: str) -> None:
    params = _signed(REAL_PARAMS, "hmac-sha256")
    params[change] = value
    assert not verify(params, REAL_SECRET)


def test_verify_rejects_wrong_secret_and_missing_sign() -> None:
    params = _signed(REAL_PARAMS, "hmac")
    assert not verify(params, REAL_SECRET + "x")
    del params["sign"]
    assert not verify(params, REAL_SECRET)


def test_verify_rejects_non_ascii_sign() -> None:
    params = _signed(REAL_PARAMS, "md5")
    params["sign"] = "签名"
    assert verify(params, REAL_SECRET) is False


_names = st.text(min_size=1, max_size=12).filter(lambda k: k not in {"sign", "sign_method"})
_params = st.dictionaries(_names, st.text(max_size=20), max_size=8)


@given(
    params=_params, secret=st.text(min_size=1, max_size=40), method=st.sampled_from(SIGN_METHODS)
)
def test_verify_of_sign_holds(params: dict[str, str], secret: str, method: SignMethod) -> None:
    signed = _signed(params, method, secret)
    assert verify(signed, secret)
    assert sign(signed, secret, method) == reference_sign(signed, secret, method)


@given(
    params=_params.filter(bool),
    secret=st.text(min_size=1, max_size=40),
    method=st.sampled_from(SIGN_METHODS),
    data=st.data(),
)
def test_changing_any_value_breaks_the_signature(
    params: dict[str, str], secret: str, method: SignMethod, data: st.DataObject
) -> None:
    signed = _signed(params, method, secret)
    name = data.draw(st.sampled_from(sorted(params)))
    new_value = data.draw(st.text(max_size=20).filter(lambda v: v != params[name]))
    signed[name] = new_value
    assert not verify(signed, secret)
