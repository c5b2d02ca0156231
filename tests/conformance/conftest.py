from tests.conformance.engine_cases import engine_case

__all__ = ["engine_case"]
