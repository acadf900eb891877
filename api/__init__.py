"""FastAPI app: routes, auth, dependencies. No business rules: those are in `policy/`, and
governance state is written only by workflows."""
