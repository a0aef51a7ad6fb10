"""The service layer: what the interfaces (GraphQL, the CLI, the sync) ask of the
inventory, as plain functions over the database, one module per noun (device.py,
allocation.py, tenant.py, ...), with the tables they share (models/), the engines and
the transaction rule (session.py), the tenancy rule as SQL (scope.py) and the schema's
history (migrations/).

The transaction rule (tests/unit/test_transaction_rule.py): a function given a
``Session`` works inside its caller's transaction and never commits or rolls back; a
function that owns its transactions (a claim's retries, the sync's lease) is given a
``sessionmaker`` instead. Decisions are the domain's (api/domain); this layer turns them
into statements, and the database stays the arbiter of every race.

The layers are checked (pyproject.toml's import contracts): the interfaces import this
layer, this layer imports the domain, never the other way.
"""
