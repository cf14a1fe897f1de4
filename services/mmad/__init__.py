"""The MMAD format: read it, score answers to it, and generate synthetic data in it.

- types.py: question types (Object Structure/Details merged into Object Analysis), Question, Sample.
- loader.py: load_dataset(root) reads mmad.json + domain_knowledge.json as MMAD ships them.
- scoring.py: grade (the letter read by services/common/answers.py), Graded, score (balanced AD, macro
  averages, both unparseable policies).
- synth.py: synthesize(out, seed, ...) writes a synthetic dataset in that layout; it draws on
  catalogue.py (products, defect types, texts), render.py (normal renderings), defects.py (defects with
  masks) and questions.py (MMAD phrasings, answers from what was drawn).
- preview.py: count tables and the contact sheet (`echo-iad data synth|summary`: app/commands/data.py).
"""
