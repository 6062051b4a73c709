"""The study's file formats that the core asks about: checkpoint keys and renames (`keys`), its RandSampler
(`sampler`) and its result files (`results`). These depend on `core` and `data` only, so the selection
loader and the run context can ask them without importing the rest of the wing."""
