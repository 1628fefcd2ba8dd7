"""Training engine: the loop (``agmm.engine.train.train``, also ``agmm.train``), its optimiser /
scheduler, sampler and datasets.

Nothing is imported here, so that ``agmm.engine.train`` is always the module (the loop's file),
never the function of the same name.
"""
