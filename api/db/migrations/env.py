"""Alembic environment: the engine comes from our code, never from alembic.ini."""

from alembic import context
from sqlalchemy import Engine

from api.db import models  # noqa: F401  (registers every table on the metadata)
from api.db.base import Base
from api.db.session import make_engine
from api.settings import Settings

config = context.config


def run_migrations() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:  # the plain `alembic` command line, for developers
        engine = make_engine(Settings.from_env().database_url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite
            compare_type=True,
        )
        context.run_migrations()


run_migrations()
