"""Test support, one package imported one way: `from tests.support.<module> import ...`.

- `services`: free ports, missing-service policy, PostgreSQL databases (copied from a migrated template),
  a Redis server of our own;
- `alerting`: rows and settings for alert tests, HTTP receivers;
- `processes`: real Vigil processes (a `Stack`) for end-to-end and reliability tests;
- `faults`: the fault suite's deployment, proxy and invariants;
- `mqtt`, `sql`, `web`: a Mosquitto of our own, the SQL door's seeds and roles, the review page's seeds.
"""
