"""The demo's saved profiles mean what their names say: given the variables the documents
pass, `h100` hands out H100 servers only, and `h100-india` H100 servers in India only, and
leaving their defining variable out is refused rather than matched against everything."""

from __future__ import annotations

import pytest

from api.demo import PROFILES
from tests.support.demo import Demo

MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  deviceDetails explanation { steps { filter entered left } } } }"""
FREE = """query($tags: [TagInput!]) { devices(first: 1, filter: {status: [AVAILABLE],
  tags: $tags, minFreeGpus: 8}) { totalCount } }"""


def _dry_run(demo: Demo, profile: str, variables: dict[str, str]) -> dict:
    request = {"environment": "preview", "profile": profile, "dryRun": True}
    return demo.graphql(MATCH, {"input": {**request, "variables": variables}})


@pytest.mark.parametrize(
    ("profile", "variables", "tags"),
    [
        ("h100", {"gputype": "H100", "gpu": "8"}, {"gputype": "H100"}),
        (
            "h100-india",
            {"gputype": "H100", "zone": "india", "gpu": "8"},
            {"gputype": "H100", "location": "india"},
        ),
        (
            "h100",
            {"gputype": "MI300X", "zone": "germany", "gpu": "8"},
            {"gputype": "MI300X", "location": "germany"},
        ),
    ],
)
def test_a_profile_with_the_documented_variables_keeps_exactly_the_servers_it_names(
    demo: Demo, profile: str, variables: dict[str, str], tags: dict[str, str]
) -> None:
    answer = _dry_run(demo, profile, variables)["data"]["matchDevice"]
    chosen = answer["deviceDetails"]
    assert {chosen["tags"][key] for key in tags} == set(tags.values())
    conditions = [{"key": key, "value": value} for key, value in tags.items()]
    expected = demo.graphql(FREE, {"tags": conditions})["data"]["devices"]["totalCount"]
    assert expected > 1  # the demo has a choice to make
    *filters, choice = answer["explanation"]["steps"]
    assert filters[-1]["left"] == expected and choice["entered"] == expected


@pytest.mark.parametrize(
    ("profile", "missing"), [("h100", "gputype"), ("h100-india", "gputype"), ("h100-india", "zone")]
)
def test_leaving_out_a_defining_variable_is_refused_by_name(
    demo: Demo, profile: str, missing: str
) -> None:
    variables = {"gputype": "H100", "zone": "india", "gpu": "8"}
    del variables[missing]
    [error] = _dry_run(demo, profile, variables)["errors"]
    assert error["extensions"]["code"] == "BAD_VARIABLE"
    assert error["extensions"]["variable"] == missing


def test_the_demo_saves_every_profile_the_documents_name(demo: Demo) -> None:
    saved = demo.graphql("{ profiles { name inventoryType } }")["data"]["profiles"]
    assert {p["name"] for p in saved} >= set(PROFILES)
