"""Mutations of real Hotmart payloads, shared by the CI fuzz test and benchmarks/ingest_fuzz_long.py."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from hypothesis import strategies as st

SAMPLE_NAMES = sorted(
    p.name[: -len(".json")] for p in resources.files("ingest.samples").iterdir() if p.name.endswith(".json")
)
SAMPLES = {
    name: json.loads(resources.files("ingest.samples").joinpath(f"{name}.json").read_text("utf-8"))
    for name in SAMPLE_NAMES
}
HUGE = 900 * 1024

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
weird_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=["Cs"])),
    st.sampled_from(["", " ", "\x00", "null", "../../etc/passwd", "😀" * 50, "a@b", "-1", "1e309", "NaN"]),
    st.integers(min_value=1, max_value=HUGE).map(lambda n: "x" * n),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


def _set(body: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        body = body[key]
    body[path[-1]] = value


def _delete(body: Any, path: tuple) -> None:
    for key in path[:-1]:
        body = body[key]
    del body[path[-1]]


@st.composite
def mutated_sample(draw: st.DrawFn) -> tuple[str, bytes]:
    """(sample name, body bytes): a real sample with 1-4 mutations; the event id is fresh per example."""
    name = draw(st.sampled_from(SAMPLE_NAMES))
    body = copy.deepcopy(SAMPLES[name])
    body["id"] = draw(st.uuids()).hex if draw(st.booleans()) else str(draw(st.uuids()))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["type", "delete", "text", "junk", "unicode_key"]))
        try:
            if kind == "delete":
                _delete(body, path)
            elif kind == "type":
                _set(body, path, draw(st.sampled_from([None, 0, -1, 1.5, True, [], {}, "", "0", [1, 2]])))
            elif kind == "text":
                _set(body, path, draw(weird_text))
            elif kind == "junk":
                _set(body, path, draw(junk))
            else:
                _set(body, (*path[:-1], draw(st.text(min_size=1, max_size=10))), draw(junk))
        except (KeyError, IndexError, TypeError):
            continue
    raw = json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8")
    if len(raw) > 1024 * 1024:  # over the limit is a 413, covered elsewhere: keep the body authentic-sized
        raw = raw[: 1024 * 1024]
    if draw(st.integers(0, 19)) == 0:  # now and then: not JSON at all
        raw = draw(
            st.sampled_from([raw[: len(raw) // 2], b"\xff\xfe" + raw, raw + b"}", b"", b"[]", b"null"])
        )
    return name, raw
