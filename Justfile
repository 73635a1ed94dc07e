# ephemerd developer recipes

# regenerate ephemerd/_proto from protos/
proto:
    python scripts/gen_protos.py

# fail if ephemerd/_proto is stale
proto-check:
    python scripts/gen_protos.py --check

# lint and type-check
lint:
    ruff check .
    ruff format --check .
    pyright

# run the tests (pass e.g. `just test tests/control -x -q`)
test *ARGS:
    pytest {{ARGS}}
