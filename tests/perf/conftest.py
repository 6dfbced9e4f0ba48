from tests.conftest import shared_stack, stack  # noqa: F401  (the same real-stack fixtures)
