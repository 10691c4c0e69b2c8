"""Alembic environment of the store. Run only through workbench/store/schema.py, which hands over a connection
already inside a transaction (config.attributes["connection"]): the whole upgrade commits or nothing does."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    # both dialects run DDL inside a transaction here (schema.py opens SQLite connections that do)
    transactional_ddl=True,
    # SQLite changes a CHECK constraint by copying the table: batch operations do that, PostgreSQL ALTERs in place
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
