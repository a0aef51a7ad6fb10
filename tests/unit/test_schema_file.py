"""schema.graphql is what portals and pipelines code against: it must match the live schema."""

from pathlib import Path

from api.graphql.schema import printed_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_live_schema() -> None:
    assert SCHEMA_FILE.read_text() == printed_schema(), (
        "schema.graphql is stale: regenerate it with "
        "`.venv/bin/python -m api.graphql.schema > schema.graphql`"
    )


def test_fixed_contract_of_import_inventory() -> None:
    sdl = printed_schema()
    assert "importInventory(format: ImportFormat! = JSON, data: String!): ImportResult!" in sdl
    assert "scalar JSON" in sdl
