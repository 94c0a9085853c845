"""The composition root: what wires the deployables together.

Only this package (and tests and benchmarks) imports every deployable: the CLI that starts one
service or the whole demo, the embedded broker and database for the demo and tests, and the
clip simulator. The rest of ``nattillsyn`` is shared plumbing that imports no deployable.
"""
