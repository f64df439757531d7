"""The toy world: procedural faces in three styles, the judges, the zoo's training and few-shot adaptation,
and the toy-world scoring and evaluation commands.
"""
