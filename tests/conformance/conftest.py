from tests.conformance.engine_cases import engine_case
from tests.integration.conftest import pg_databases, pg_server

__all__ = ["engine_case", "pg_databases", "pg_server"]
