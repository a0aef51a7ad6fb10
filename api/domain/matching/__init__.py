"""The matchmaking engine (seed 001, DESIGN.md "Matchmaking"): pure functions over plain data.

profile.py  labels -> Profile (inventory type + typed filters), BAD_PROFILE naming index/field
request.py  Profile + variables -> Request (conditions, requirements, skips), BAD_VARIABLE
index.py    Candidate and CandidateIndex: an in-memory inverted index over device documents
engine.py   Request + index -> Outcome (chosen items and the explanation funnel)
"""
