"""Locust users: `locust -f loadtests/locust/locustfile.py` (Inspector) or `loadtests/locust/stages.py`
(each stage); `python -m loadtests.locust.run` runs the named scenarios."""
