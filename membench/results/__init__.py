"""results.json as one typed model: what `membench run` writes and every reader reads.

`model` holds the types, `document` reads and writes them (a version check, then a typed decode
that is the validation), and `results.schema.json`, generated from the model, is the format
other tools can validate with any JSON Schema library.
"""
